"""Specification of the toy model: tokenizer, architecture, prompts, model directory and the committed weights."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ego_ros.core.loading import TOY_MODEL_DIR, load_backend
from ego_ros.core.prompts import PromptSet, split_keywords
from ego_ros.toy import world
from ego_ros.toy.model_config import (
    PROMPT_OVERRIDES,
    ToyModelSpec,
    build_model,
    count_parameters,
    projector_input_is_last_layer,
    save_model_dir,
    toy_prompts,
)
from ego_ros.toy.tokenizer import build_tokenizer, vocabulary_words

NAMES = ["kona", "Anna's mug", "猫", "Zoë", "my red mug", "x", "bo", "kona2", "ŁÓDŹ", "a-b_c", "😀 smile"]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


# ----- tokenizer ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_any_concept_name_tokenizes_without_unknown_and_decodes_back(tok, name):
    for text in (name, f"is {name} here?", f"{name}: "):
        ids = _ids(tok, text)
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text


def test_distinct_names_give_distinct_token_sequences(tok):
    seqs = {tuple(_ids(tok, n)) for n in NAMES}
    assert len(seqs) == len(NAMES)


def test_world_words_and_answers_are_single_tokens(tok):
    for word in [*world.WORLD_VOCABULARY, "yes", "no", "0", "7", "42", "100"]:
        assert len(_ids(tok, word)) == 1, word
        assert len(_ids(tok, " " + word)) == 1, word


def test_a_name_keeps_its_byte_pieces_at_a_line_start_and_after_a_space(tok):
    line = tok.convert_ids_to_tokens(_ids(tok, "kona: "))
    inner = tok.convert_ids_to_tokens(_ids(tok, "is kona here?"))
    core = [t for t in line if t not in (":", "▁")]
    assert "".join(inner).find("".join(core)) >= 0


def test_every_prompt_text_tokenizes_without_unknown(tok):
    for prompts in (PromptSet(), toy_prompts()):
        for f in dataclasses.fields(prompts):
            value = getattr(prompts, f.name)
            for text in value if isinstance(value, tuple) else [value]:
                assert tok.unk_token_id not in _ids(tok, text.replace("{", "").replace("}", "")), f.name


def test_vocabulary_has_no_duplicates_and_holds_the_world(tok):
    words = vocabulary_words()
    assert len(words) == len(set(words))
    assert set(world.WORLD_VOCABULARY) <= set(words)


def test_tokenizer_saves_and_loads_with_autotokenizer(tok, tmp_path: Path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert _ids(again, "is Anna's mug here?") == _ids(tok, "is Anna's mug here?")
    assert again.eos_token == "<|im_end|>"
    rendered = again.apply_chat_template(
        [{"role": "user", "content": "describe the image."}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>user\ndescribe the image.<|im_end|>\n<|im_start|>assistant\n"


# ----- architecture ------------------------------------------------------------------------------------
def test_the_model_is_a_standard_llava_of_about_four_million_parameters(tok):
    model = build_model(tok, ToyModelSpec())
    counts = count_parameters(model)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert 3.5e6 < counts["total"] < 4.5e6
    assert model.config.vision_config.model_type == "siglip_vision_model"
    assert model.config.text_config.model_type == "llama"


def test_the_projector_sees_the_last_vision_layer_in_every_transformers_version(tok, tmp_path: Path):
    model = build_model(tok, ToyModelSpec.tiny())
    assert projector_input_is_last_layer(model)
    save_model_dir(tmp_path, model, tok, ToyModelSpec.tiny())
    backend = load_backend(str(tmp_path))
    assert projector_input_is_last_layer(backend.model)


def test_yes_and_no_answers_start_with_different_tokens(tok):
    yes = {_ids(tok, w)[0] for w in PROMPT_OVERRIDES["yes"]}
    no = {_ids(tok, w)[0] for w in PROMPT_OVERRIDES["no"]}
    assert yes and no and not yes & no


@pytest.fixture(scope="module")
def tiny_dir(tok, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy_tiny")
    save_model_dir(out, build_model(tok, ToyModelSpec.tiny(), seed=3), tok, ToyModelSpec.tiny())
    return out


def test_a_model_directory_ships_the_toy_prompts(tiny_dir: Path):
    data = json.loads((tiny_dir / "ego_prompts.json").read_text())
    assert data == json.loads(json.dumps(PROMPT_OVERRIDES))
    assert load_backend(str(tiny_dir)).prompts == toy_prompts()


def test_a_camera_frame_is_resized_to_sixty_four_visual_tokens(tiny_dir: Path):
    backend = load_backend(str(tiny_dir))
    frame = Image.fromarray(world.render(world.query_spec(np.random.default_rng(0)), (640, 480)).image)
    (vt,) = backend.encode_images([frame])
    assert (vt.rows, vt.cols) == (8, 8) and vt.box == (0.0, 0.0, 640.0, 480.0)


# ----- the committed weights ---------------------------------------------------------------------------
committed = pytest.mark.skipif(
    not (TOY_MODEL_DIR / "model.safetensors").is_file(), reason="no committed toy weights yet"
)


@committed
def test_committed_model_directory_is_small_and_complete():
    files = {p.name: p.stat().st_size for p in TOY_MODEL_DIR.iterdir() if p.is_file()}
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        "ego_prompts.json",
        "TRAINING.md",
    ):
        assert name in files
    assert sum(files.values()) <= 30 * 2**20


@pytest.fixture(scope="module")
def toy_engine():
    from ego_ros.core.engine import EgoEngine

    return EgoEngine.load("toy")


#: Floors of the share of held-out reference views whose description names the main object's colour
#: and shape ("in most cases"), over the 48 views of the test below: measured on the committed weights
#: colour 0.96, shape 0.73 (0.92-1.0 and 0.63-0.88 over five blocks of 24 views; the previous,
#: 669k-sample weights: colour 1.0, shape 0.65 on the same 48 views).
DESCRIBE_MIN_COLOUR = 0.8
DESCRIBE_MIN_SHAPE = 0.6
#: Floor of the ROC AUC of positives over easy negatives (scenes holding neither the concept nor a
#: look-alike) through the engine; measured on the committed weights over SEPARATION_SEEDS of
#: `_engine_separation`: 0.93-1.0, 0.93 on seed 11 (docs/toy_model.md); floor below the lowest with margin.
EASY_AUC_MIN = 0.85
#: Floor of the ROC AUC of positives over look-alikes (same shape and colour, other mark or pattern),
#: pooled over SEPARATION_SEEDS: 0.86 measured on the committed weights (the earlier weights: 0.72,
#: 0.62 and 0.50), floor set below it with margin (docs/toy_model.md).
SEPARATION_SEEDS = (0, 1, 2, 3, 4, 11)
HARD_AUC_MIN = 0.78


@committed
@pytest.mark.slow
def test_committed_model_names_colour_and_shape_of_held_out_objects(toy_engine):
    from ego_ros.core.compose import view_sequence

    backend, runner = toy_engine.backend, toy_engine.runner
    held = world.held_out_instances()
    colour = shape = 0
    n = 48
    for i in range(n):
        rng = np.random.default_rng([2024 + i // 24, i % 24])
        inst = held[int(rng.integers(len(held)))]
        img = Image.fromarray(world.reference_scene(inst, rng, 64, distractor_held_out=None).image)
        (vt,) = backend.encode_images([img])
        with torch.inference_mode():
            ids = runner.generate(view_sequence(backend, vt, backend.prompts.keywords), 12)
        words = [w.lower() for w in split_keywords(backend.decode(ids))]
        colour += inst.colour_name in words
        shape += inst.shape_name in words
    assert colour / n >= DESCRIBE_MIN_COLOUR
    assert shape / n >= DESCRIBE_MIN_SHAPE


def _engine_scores(engine, seed: int, negative: str, concepts: int = 6, queries: int = 3) -> tuple[list, list]:
    """Introduce held-out concepts through the engine (Ego memory from one reference view) and return
    P(yes) on scenes holding the concept and on scenes holding a near-duplicate instead
    (negative="hard") or neither (negative="easy")."""
    pos, neg = [], []
    held = world.held_out_instances()
    for c in range(concepts):
        rng = np.random.default_rng([seed, 77, c])
        inst = held[int(rng.integers(len(held)))]
        dup = world.sample_near_duplicate(inst, rng)
        ref = world.reference_scene(inst, rng, 64, distractor_held_out=None)
        name = f"concept{c}"
        engine.introduce(name, [Image.fromarray(ref.image)], replace_existing=True)
        for _ in range(queries):
            p = world.query_scene(rng, 64, include=[inst], distractor_held_out=None)
            if negative == "hard":
                n = world.query_scene(rng, 64, include=[dup], exclude=[inst], distractor_held_out=None)
            else:
                n = world.query_scene(rng, 64, exclude=[inst, *world.near_duplicates(inst)], distractor_held_out=None)
            pos.append(engine.recognize(Image.fromarray(p.image), [name])[0].probability)
            neg.append(engine.recognize(Image.fromarray(n.image), [name])[0].probability)
        engine.remove(name)
    return pos, neg


def _pooled_auc(scores: list[tuple[list, list]]) -> float:
    """ROC AUC of every (positives, negatives) pair's positives against all their negatives."""
    from ego_ros.toy.train import auc

    return auc([p for pos, _ in scores for p in pos], [n for _, neg in scores for n in neg])


def _engine_separation(engine, seeds: tuple[int, ...], negative: str) -> float:
    """ROC AUC of `_engine_scores` pooled over `seeds`: one seed's 18 positives and 18 negatives are too
    few to judge a weak effect such as look-alike separation."""
    return _pooled_auc([_engine_scores(engine, seed, negative) for seed in seeds])


@committed
@pytest.mark.slow
def test_committed_model_recognises_an_introduced_concept_among_other_objects(toy_engine):
    assert _engine_separation(toy_engine, (11,), negative="easy") >= EASY_AUC_MIN


@committed
@pytest.mark.slow
def test_committed_model_tells_an_introduced_concept_from_its_look_alikes(toy_engine):
    assert _engine_separation(toy_engine, SEPARATION_SEEDS, negative="hard") >= HARD_AUC_MIN
