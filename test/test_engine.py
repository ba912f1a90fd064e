"""The engine facade: concepts, recognition, questions, captions, context modes and failure handling."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import random_image

from ego_ros.core.engine import EgoEngine, EngineConfig, mentioned
from ego_ros.core.errors import (
    BusyError,
    DeviceOutOfMemoryError,
    DuplicateConceptError,
    InvalidConceptNameError,
    InvalidImageError,
    ModelMismatchError,
    UnknownConceptError,
)
from ego_ros.core.introduce import IntroduceOptions
from ego_ros.core.store import ConceptStore

FAST = IntroduceOptions(max_new_tokens=4, area_max_new_tokens=3)


@pytest.fixture
def engine(llava):
    return EgoEngine(llava, config=EngineConfig(introduce=FAST))


def test_introduce_returns_a_memory_with_keywords_and_size(engine):
    mem = engine.introduce("kona", [random_image(1), random_image(2)])
    assert mem.name == "kona" and len(mem.views) == 2
    assert mem.num_tokens == sum(mem.k_c) > 0
    assert mem.fingerprint == engine.backend.fingerprint()
    assert mem.seconds > 0
    assert engine.store.names() == ["kona"]


def test_recognize_gives_one_probability_per_stored_concept(engine):
    engine.introduce("kona", [random_image(1)])
    engine.introduce("milo", [random_image(2)])
    recs = engine.recognize(random_image(3))
    assert [r.name for r in recs] == ["kona", "milo"]
    assert all(0.0 <= r.probability <= 1.0 and r.present == (r.probability >= 0.5) for r in recs)


def test_recognize_with_no_concepts_is_empty(engine):
    assert engine.recognize(random_image(3)) == []


def test_similarity_filter_bounds_the_context(engine):
    for i in range(4):
        engine.introduce(f"c{i}", [random_image(10 + i)])
    engine.config.max_context_concepts = 2
    recs = engine.recognize(random_image(10))  # the query is c0's own reference image
    considered = [r.name for r in recs if r.considered]
    assert len(considered) == 2 and "c0" in considered
    assert all(r.probability == 0.0 and not r.present for r in recs if not r.considered)


def test_duplicate_and_invalid_names_are_refused_before_any_work(engine):
    engine.introduce("kona", [random_image(1)])
    with pytest.raises(DuplicateConceptError):
        engine.introduce("kona", [random_image(2)])
    with pytest.raises(InvalidConceptNameError):
        engine.introduce("a/b", [random_image(2)])
    assert engine.store.names() == ["kona"]


def test_replace_overwrites_a_concept(engine):
    first = engine.introduce("kona", [random_image(1)])
    second = engine.introduce("kona", [random_image(2), random_image(3)], replace_existing=True)
    assert engine.store.get("kona") is second and len(second.views) == 2 and first is not second


def test_bad_images_are_refused_and_store_unchanged(engine):
    with pytest.raises(InvalidImageError):
        engine.introduce("kona", [])
    with pytest.raises(InvalidImageError):
        engine.introduce("kona", [torch.zeros(3).numpy()])
    with pytest.raises(InvalidImageError):
        engine.recognize("missing.png")
    assert len(engine.store) == 0


def test_unknown_concepts_in_a_query_are_a_clear_error(engine):
    engine.introduce("kona", [random_image(1)])
    with pytest.raises(UnknownConceptError, match="rex"):
        engine.recognize(random_image(2), ["rex"])
    with pytest.raises(UnknownConceptError):
        engine.ask(random_image(2), "Where is rex?", concepts=["rex"])


def test_ask_caption_and_video_return_answers(engine):
    engine.introduce("kona", [random_image(1)])
    a = engine.ask(random_image(2), "Is kona sleeping?", max_new_tokens=3)
    assert isinstance(a.text, str) and a.concepts == ["kona"]
    c = engine.caption(random_image(2), max_new_tokens=3)
    assert isinstance(c.text, str)
    v = engine.ask_video([random_image(4), random_image(5)], "What does kona do?", max_new_tokens=3)
    assert isinstance(v.text, str)
    with pytest.raises(InvalidImageError):
        engine.ask_video([], "?")


@pytest.mark.parametrize("mode", ["memory", "keywords", "memory+keywords", "reference_images", "none"])
def test_every_context_mode_runs(llava, mode):
    engine = EgoEngine(llava, config=EngineConfig(introduce=IntroduceOptions(max_new_tokens=3, keep_reference=True),
                                                  context=mode))
    engine.introduce("kona", [random_image(1)])
    (rec,) = engine.recognize(random_image(2))
    assert 0.0 <= rec.probability <= 1.0


def test_reference_images_context_needs_stored_references(engine):
    engine.introduce("kona", [random_image(1)])
    engine.set_context("reference_images")
    with pytest.raises(ValueError, match="keep_reference"):
        engine.recognize(random_image(2))


def test_context_modes_change_what_the_model_sees(llava):
    probs = {}
    for mode in ("memory", "keywords", "none"):
        engine = EgoEngine(llava, config=EngineConfig(introduce=FAST, context=mode))
        engine.introduce("kona", [random_image(1)])
        probs[mode] = engine.recognize(random_image(2))[0].probability
    assert len({round(p, 7) for p in probs.values()}) == 3


def test_a_call_during_an_introduction_can_fail_fast_with_busy_error(engine):
    started, release = threading.Event(), threading.Event()
    real = engine.backend.encode_images

    def slow_encode(images, **kwargs):
        started.set()
        release.wait(10)
        return real(images, **kwargs)

    engine.backend.encode_images = slow_encode
    try:
        t = threading.Thread(target=engine.introduce, args=("kona", [random_image(1)]))
        t.start()
        started.wait(10)
        assert engine.introducing == "kona"
        with pytest.raises(BusyError, match="busy"):
            engine.introduce("milo", [random_image(2)], wait=False)
        release.set()
        t.join(30)
    finally:
        del engine.backend.encode_images
    assert engine.store.names() == ["kona"] and engine.introducing is None


def test_out_of_device_memory_becomes_a_clear_error_and_changes_nothing(engine):
    def oom(images, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    engine.backend.encode_images = oom
    try:
        with pytest.raises(DeviceOutOfMemoryError, match="Nothing was changed"):
            engine.introduce("kona", [random_image(1)])
    finally:
        del engine.backend.encode_images
    assert len(engine.store) == 0 and engine.introducing is None


def test_engine_loads_a_persistent_store_of_its_model(tmp_path, llava):
    store = ConceptStore.open(tmp_path, llava.fingerprint(), device=llava.device)
    EgoEngine(llava, store, EngineConfig(introduce=FAST)).introduce("kona", [random_image(1)])
    store.close()
    again = EgoEngine(llava, ConceptStore.open(tmp_path, llava.fingerprint()))
    assert again.store.names() == ["kona"]


def test_engine_refuses_a_store_of_another_model(tmp_path, backends):
    store = ConceptStore.open(tmp_path, backends["qwen2_5_vl"].fingerprint())
    with pytest.raises(ModelMismatchError):
        EgoEngine(backends["llava"], store)


def test_fingerprint_differs_between_models_and_ignores_dtype():
    from conftest import make_backend

    a, b = make_backend("llava", seed=0), make_backend("llava", seed=1)
    assert a.fingerprint() != b.fingerprint()
    a16 = make_backend("llava", seed=0, dtype=torch.bfloat16)
    assert a16.fingerprint() == a.fingerprint()


def test_mentioned_matches_whole_names_case_insensitively():
    assert mentioned("Kona sleeps next to bo's bowl", ["kona", "bo", "boat", "milo"]) == ["kona", "bo"]


def test_text_only_questions_need_no_image(engine):
    engine.introduce("kona", [random_image(1)])
    answer = engine.ask(None, "Who is kona?", max_new_tokens=3)
    assert isinstance(answer.text, str) and answer.concepts == ["kona"]


def test_introduce_reports_each_view_as_it_finishes(engine):
    seen = []
    mem = engine.introduce("kona", [random_image(1), random_image(2)],
                           on_view=lambda i, view: seen.append((i, view.k_c, engine.store.names())))
    assert [i for i, _, _ in seen] == [0, 1]
    assert [k for _, k, _ in seen] == mem.k_c
    assert all(names == [] for _, _, names in seen), "views are reported before the concept is stored"
