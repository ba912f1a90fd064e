"""Specification of toy-world video clips and the endless stream."""

from __future__ import annotations

import numpy as np
import pytest

from ego_ros.toy import video, world
from ego_ros.toy.world import Instance, WorldError

MINE = Instance.from_key("green-triangle-checkered-white-top")


def _clip(seed: int, **kwargs) -> video.ClipSpec:
    return video.sample_clip(np.random.default_rng(seed), n_frames=30, **kwargs)


def test_same_seed_gives_the_same_clip_and_frames():
    a, b = _clip(4, include=[MINE]), _clip(4, include=[MINE])
    assert a == b
    for i in (0, 15, 29):
        fa, fb = video.render_frame(a, i, 48), video.render_frame(b, i, 48)
        assert np.array_equal(fa.image, fb.image) and np.array_equal(fa.masks, fb.masks)


def test_different_seeds_give_different_clips():
    assert _clip(1) != _clip(2)


def test_included_instances_are_tracked_and_visible_at_the_start():
    clip = _clip(8, include=[MINE], n_objects=(3, 4))
    assert MINE in [t.instance for t in clip.tracks]
    assert 3 <= len(clip.tracks) <= 4
    assert MINE in video.render_frame(clip, 0, 64).visible


def test_frame_ground_truth_matches_its_masks():
    clip = _clip(3, include=[MINE], n_objects=(4, 4))
    for frame in video.iter_frames(clip, 64):
        scene = frame.scene
        assert frame.masks.shape == (len(clip.tracks), 64, 64)
        assert frame.masks.sum(0).max() <= 1
        assert set(frame.visible) == {t.instance for k, t in enumerate(clip.tracks) if frame.masks[k].any()}
        assert set(frame.recognisable) <= set(frame.visible)
        for k, track in enumerate(clip.tracks):
            assert np.array_equal(frame.masks[k], scene.labels.object == k + 1)
            assert scene.spec.objects[k].instance == track.instance


def test_motion_is_smooth():
    clip = _clip(5, n_objects=(4, 4))
    centres = np.array([[(o.x, o.y) for o in clip.scene_spec(i).objects] for i in range(clip.n_frames)])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=2)
    assert steps.max() < 0.04  # normalised units per frame at 30 fps
    assert steps.sum(0).min() > 0  # every object moves
    assert np.abs(np.diff(centres, n=2, axis=0)).max() < 0.002  # no jumps: velocity changes slowly
    angles = np.array([[o.angle for o in clip.scene_spec(i).objects] for i in range(clip.n_frames)])
    assert np.abs(np.diff(angles, axis=0)).max() < 3.0


def test_crossing_objects_start_outside_the_frame_and_enter_it():
    for seed in range(10):
        clip = video.sample_clip(np.random.default_rng(seed), n_frames=150, n_objects=(2, 2), cross_p=1.0)
        first, middle = video.render_frame(clip, 0, 32).scene, video.render_frame(clip, 75, 32).scene
        # At most a sliver on the first frame (the wobble: up to 7 % measured over 40 seeds), both in view later.
        assert all(first.visible_fraction(k) <= 0.1 for k in range(2))
        assert middle.visible_pixels.min() > 0


def test_frames_render_at_camera_resolution():
    clip = _clip(2, include=[MINE])
    frame = video.render_frame(clip, 10, (640, 480))
    assert frame.image.shape == (480, 640, 3) and frame.image.dtype == np.uint8
    assert frame.time == pytest.approx(10 / 30)


def test_stream_is_deterministic_across_clip_boundaries():
    def first_frames(seed):
        stream = video.VideoStream(seed, size=32, fps=30, clip_seconds=(0.1, 0.2), include=[MINE])
        return [stream.next_frame() for _ in range(15)]

    a, b = first_frames(1), first_frames(1)
    assert [f.clip_index for f in a] == [f.clip_index for f in b]
    assert a[-1].clip_index >= 2
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert not np.array_equal(a[0].image, first_frames(2)[0].image)


def test_stream_never_uses_included_instances_as_distractors():
    stream = video.VideoStream(3, size=16, clip_seconds=(0.05, 0.05), include=[MINE], include_p=0.0)
    for _ in range(10):
        stream.next_frame()
        assert MINE not in [t.instance for t in stream.clip.tracks]


TWIN = Instance.from_key("green-triangle-checkered-black-top")


def _cycling_stream(**kwargs) -> video.VideoStream:
    return video.VideoStream(3, size=16, clip_seconds=(0.05, 0.05), include=[MINE], lookalikes=[TWIN],
                             cycle=("include", "absent", "lookalike"), **kwargs)


def test_a_cycle_plays_its_clip_kinds_in_turn():
    stream = _cycling_stream()
    for k in range(9):
        shown = {t.instance for t in stream.make_clip(k).tracks}
        expected = [{MINE}, set(), {TWIN}][k % 3]
        assert shown & {MINE, TWIN} == expected, k


def test_a_cycle_keeps_the_clip_count_and_size_limits():
    stream = _cycling_stream(n_objects=(1, 2), object_size=(0.3, 0.35))
    for k in range(9):
        clip = stream.make_clip(k)
        assert 1 <= len(clip.tracks) <= 2
        assert all(0.3 <= t.size <= 0.35 for t in clip.tracks)


def test_without_a_cycle_look_alikes_are_never_shown():
    stream = video.VideoStream(3, size=16, clip_seconds=(0.05, 0.05), include=[MINE], lookalikes=[TWIN],
                               include_p=1.0)
    assert all(TWIN not in {t.instance for t in stream.make_clip(k).tracks} for k in range(10))


@pytest.mark.parametrize("kwargs", [
    {"cycle": ("include", "sometimes")},
    {"cycle": ("lookalike",), "include": [MINE]},
    {"cycle": ("include",)},
    {"include": [MINE], "lookalikes": [MINE]},
    {"object_size": (0.4, 0.2)},
])
def test_bad_stream_arguments_raise_world_error(kwargs):
    with pytest.raises(WorldError):
        video.VideoStream(0, **kwargs)


def test_bad_clip_arguments_raise_world_error():
    with pytest.raises(WorldError):
        video.sample_clip(np.random.default_rng(0), n_objects=(0, 2))
    with pytest.raises(WorldError):
        video.ClipSpec(background=world.BackgroundSpec(), tracks=(), n_frames=0)
    with pytest.raises(WorldError):
        _clip(0).scene_spec(30)
