"""Token layouts of tiled images: grids, framing into sequences, persistence and maps."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ego_ros.core.backends.base import StructuralRun, TokenRun, VisualRun, VisualTokens
from ego_ros.core.errors import StoreCorruptError
from ego_ros.core.layout import Grid, Layout
from ego_ros.core.localise import BoxRule, box_from_map
from ego_ros.core.memory import ConceptMemory, MemoryView
from ego_ros.core.prompts import Slot
from ego_ros.core.sequence import VisualBlock, build_sequence, sequence_embeds
from ego_ros.core.store import memory_from_bytes, memory_to_bytes


def two_by_two_tiles(size: tuple[int, int] = (200, 100), side: int = 2) -> Layout:
    """Four side x side tiles over a 2x2 split of the image, then a side x side thumbnail of all of it."""
    w, h = size
    grids = []
    for r in range(2):
        for c in range(2):
            box = (c * w / 2, r * h / 2, (c + 1) * w / 2, (r + 1) * h / 2)
            grids.append(Grid(len(grids) * side * side, side, side, box, "tile", (r, c)))
    grids.append(Grid(4 * side * side, side, side, (0.0, 0.0, float(w), float(h)), "thumbnail"))
    return Layout(tuple(grids))


def test_single_layout_positions_are_row_major():
    which, r, c = Layout.single(3, 5, (0, 0, 50, 30)).positions()
    assert (which == 0).all()
    assert r.tolist() == [i // 5 for i in range(15)] and c.tolist() == [i % 5 for i in range(15)]


def test_single_layout_boxes_equal_the_grid_split_of_its_box():
    boxes = Layout.single(2, 4, (10, 0, 50, 20)).token_boxes()
    assert boxes[0].tolist() == [10, 0, 20, 10] and boxes[7].tolist() == [40, 10, 50, 20]


def test_layout_refuses_grids_that_do_not_follow_each_other():
    with pytest.raises(ValueError, match="offset"):
        Layout((Grid(0, 2, 2, (0, 0, 1, 1)), Grid(5, 2, 2, (0, 0, 1, 1))))


def test_tile_token_boxes_lie_in_their_tile_and_thumbnail_boxes_span_the_image():
    layout = two_by_two_tiles()
    boxes = layout.token_boxes()
    # tile (0, 1) is tokens 4..7 over x 100..200, y 0..50
    assert boxes[4:8, 0].min() == 100 and boxes[4:8, 2].max() == 200 and boxes[4:8, 3].max() == 50
    assert boxes[16:20].min(axis=0)[:2].tolist() == [0, 0] and boxes[16:20].max(axis=0)[2:].tolist() == [200, 100]


def test_map_grid_assembles_tiles_by_their_tile_position_without_the_thumbnail():
    grid, box = two_by_two_tiles().map_grid()
    assert grid.shape == (4, 4) and box == (0.0, 0.0, 200.0, 100.0)
    assert grid[0].tolist() == [0, 1, 4, 5] and grid[3].tolist() == [10, 11, 14, 15]
    assert 16 not in grid


def test_runs_split_ascending_indices_by_grid():
    assert two_by_two_tiles().runs(np.array([1, 2, 3, 9, 17])) == [(0, 0, 3), (2, 3, 4), (4, 4, 5)]


def test_tiled_visual_tokens_draw_heatmaps_on_the_assembled_grid():
    layout = two_by_two_tiles()
    vt = VisualTokens.tiled(torch.zeros(20, 4), layout, (200, 100))
    assert (vt.rows, vt.cols, vt.count) == (4, 4, 20)
    heat = np.zeros(20)
    heat[6] = 1.0  # tile (0, 1), its row 1, col 0: map cell (1, 2)
    assert vt.to_map(heat)[1, 2] == 1.0
    # whole-token boxes show the assembled geometry exactly; the default rule's resampled box is wider
    box, point, _ = box_from_map(heat, vt, BoxRule())
    assert box == (100.0, 25.0, 150.0, 50.0) and point == (125.0, 37.5)
    box, point, _ = box_from_map(heat, vt)
    assert box[0] < 125.0 < box[2] and box[1] < 37.5 < box[3] and point == pytest.approx((125.0, 37.5))


def test_tiled_visual_tokens_refuse_a_token_count_unlike_the_layout():
    with pytest.raises(ValueError, match="layout"):
        VisualTokens.tiled(torch.zeros(19, 4), two_by_two_tiles(), (200, 100))


def tiled_view(indices: list[int]) -> MemoryView:
    layout = two_by_two_tiles()
    grid, box = layout.map_grid()
    return MemoryView(embeds=torch.randn(len(indices), 8), indices=torch.tensor(indices), grid=grid.shape,
                      box=box, image_size=(200, 100), keywords=["mug"], description="mug", alpha=10.0,
                      k_c=len(indices), importance=torch.rand(20), layout=layout)


def test_a_tiled_memory_view_round_trips_with_its_layout():
    view = tiled_view([2, 5, 17])
    back = memory_from_bytes(memory_to_bytes(ConceptMemory("mug", [view], "f" * 32, "tiny"))).views[0]
    assert back.layout == view.layout and back.num_visual_tokens == 20
    np.testing.assert_array_equal(back.token_boxes(), view.token_boxes())


def test_a_stored_view_with_indices_outside_its_layout_is_refused():
    view = tiled_view([2, 5, 17])
    view.indices = torch.tensor([2, 5, 20])
    with pytest.raises(StoreCorruptError, match="outside"):
        memory_from_bytes(memory_to_bytes(ConceptMemory("mug", [view], "f" * 32, "tiny")))


def test_a_memory_block_keeps_each_tokens_grid_row_and_column():
    block = tiled_view([3, 6, 18]).block()
    assert block.indices.tolist() == [3, 6, 18]
    assert block.rows.tolist() == [1, 1, 1] and block.cols.tolist() == [1, 0, 0]


def per_tile_backend(llava, marker: int, newline: torch.Tensor):
    """The llava backend with a framing that tags every grid run and puts a structural row after it
    (full blocks only), the shape of Idefics3's and LLaVA-NeXT's framings."""
    b = copy.copy(llava)

    def frame_visual(layout, indices):
        full = len(indices) == layout.count
        pieces = []
        for _, start, stop in layout.runs(indices):
            pieces += [TokenRun((marker,)), VisualRun(start, stop)]
            if full:
                pieces.append(StructuralRun(newline))
        return pieces

    b.frame_visual = frame_visual
    return b


def test_a_per_tile_framing_places_tokens_between_runs_and_records_exactly_the_visual_columns(llava):
    marker = llava.tokenize("x")[0]
    newline = torch.full((1, llava.hidden_size), 0.5)
    b = per_tile_backend(llava, marker, newline)
    vt = VisualTokens.tiled(torch.randn(20, llava.hidden_size), two_by_two_tiles(), (200, 100))
    seq = build_sequence(b, ["a", Slot("image", "", 0), "b"], lambda s: VisualBlock.full(vt))
    cols = seq.columns["image::0"]
    assert cols.shape[0] == 20
    start, end = seq.frames["image::0"]
    assert end - start == 5 * (1 + 4 + 1)  # per grid: marker, 4 tokens, newline
    assert [seq.ids[i] for i in range(start, end, 6)] == [marker] * 5
    emb = sequence_embeds(b, seq)
    torch.testing.assert_close(emb[cols], vt.embeds)
    torch.testing.assert_close(emb[start + 5], newline[0])


def test_a_subset_of_a_tiled_image_is_framed_per_grid_that_keeps_tokens_without_structural_rows(llava):
    marker = llava.tokenize("x")[0]
    b = per_tile_backend(llava, marker, torch.zeros(1, llava.hidden_size))
    view = tiled_view([1, 2, 17])
    view.embeds = torch.randn(3, llava.hidden_size)
    seq = build_sequence(b, [Slot("memory", "mug", 0)], lambda s: view.block())
    start, end = seq.frames["memory:mug:0"]
    assert seq.ids[start:end] == [marker, b.placeholder_id, b.placeholder_id, marker, b.placeholder_id]
    assert seq.columns["memory:mug:0"].tolist() == [start + 1, start + 2, start + 4]


def test_m_rope_refuses_a_block_framed_as_several_runs(backends):
    qwen = copy.copy(backends["qwen2_5_vl"])
    qwen.frame_visual = lambda layout, indices: [VisualRun(0, 1), VisualRun(1, len(indices))]
    vt = VisualTokens(torch.randn(4, qwen.hidden_size), 2, 2, (0, 0, 2, 2), (2, 2))
    with pytest.raises(ValueError, match="M-RoPE"):
        build_sequence(qwen, [Slot("image", "", 0)], lambda s: VisualBlock.full(vt))


def test_a_framing_that_skips_tokens_is_refused(llava):
    b = copy.copy(llava)
    b.frame_visual = lambda layout, indices: [VisualRun(0, len(indices) - 1)]
    vt = VisualTokens(torch.randn(4, llava.hidden_size), 2, 2, (0, 0, 2, 2), (2, 2))
    with pytest.raises(ValueError, match="placed 3"):
        build_sequence(b, [Slot("image", "", 0)], lambda s: VisualBlock.full(vt))


def test_single_grid_views_are_stored_in_the_format_from_before_layouts():
    import json

    layout = Layout.single(3, 3, (0, 0, 60, 60))
    view = MemoryView(embeds=torch.randn(2, 8), indices=torch.tensor([1, 4]), grid=(3, 3), box=(0.0, 0.0, 60.0, 60.0),
                      image_size=(60, 60), keywords=[], description="", alpha=None, k_c=2, importance=torch.rand(9))
    data = memory_to_bytes(ConceptMemory("mug", [view], "f" * 32, "tiny"))
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    assert "layout" not in json.loads(header["__metadata__"]["ego"])["views"][0]
    assert memory_from_bytes(data).views[0].layout == layout
