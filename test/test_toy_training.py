"""Specification of the toy model's training: data stream, engine-identical sequences, resumable runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ego_ros.toy import tasks
from ego_ros.toy.attributes import held_out_instances
from ego_ros.toy.export import CONCEPT_NAMES
from ego_ros.toy.train import (
    CHECKPOINT_LATEST,
    StepRecord,
    TrainConfig,
    Trainer,
    VisionTargets,
    auc,
    batch_at,
    reproduce_flags,
    summarize_steps,
)
from ego_ros.toy.train_config import TASK_FIELDS


def _cfg(**kw) -> TrainConfig:
    base = dict(
        tiny=True,
        steps=4,
        batch_size=4,
        eval_every=0,
        threads=1,
        warmup=2,
        log_every=1,
        contrast_instances=1,
        vision_steps=1,
        vision_instances=2,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_a_batch_depends_only_on_seed_and_step():
    cfg = tasks.TaskConfig()
    a = tasks.make_batch(3, 17, 6, cfg)
    b = tasks.make_batch(3, 17, 6, cfg)
    c = tasks.make_batch(3, 18, 6, cfg)
    assert [(s.task, s.question, s.answer) for s in a] == [(s.task, s.question, s.answer) for s in b]
    assert all(np.array_equal(x.pixels, y.pixels) for s, t in zip(a, b) for x, y in zip(s.images, t.images))
    assert [(s.question, s.answer) for s in a] != [(s.question, s.answer) for s in c]


def test_training_batches_hold_no_held_out_instance_and_no_export_name():
    held = {i.index for i in held_out_instances()}
    reserved = {n.lower() for n in CONCEPT_NAMES}
    cfg = tasks.TaskConfig()
    for step in range(0, 4000, 400):
        for s in tasks.make_batch(0, step, 8, cfg):
            for im in s.images:
                assert not (set(im.obj_inst.tolist()) & held), s.task
            for e in s.entries:
                assert e.name.lower() not in reserved


def test_the_curriculum_progress_goes_from_0_to_1_over_the_ramp_whatever_the_hard_share():
    cfg = tasks.TaskConfig(ramp_steps=1000, hard_max=0.6)
    assert [cfg.ramp_progress(s) for s in (-10, 0, 250, 1000, 5000)] == pytest.approx([0, 0, 0.25, 1, 1])


def test_hard_negatives_ramp_in_with_the_curriculum():
    cfg = tasks.TaskConfig(ramp_steps=1000, hard_max=0.6)
    assert cfg.hard_share(0) == 0.0
    assert cfg.hard_share(500) == pytest.approx(0.3)
    assert cfg.hard_share(5000) == pytest.approx(0.6)
    early = [tasks.match_sample(np.random.default_rng(i), cfg, 0).kind for i in range(60)]
    late = [tasks.match_sample(np.random.default_rng(i), cfg, 5000).kind for i in range(60)]
    assert "hard" not in early
    assert late.count("hard") >= 8


def test_hard_negative_queries_of_world_v1_hold_a_near_duplicate_and_not_the_concept():
    cfg = tasks.TaskConfig(world="v1")
    s = tasks.match_sample(np.random.default_rng(4), cfg, cfg.ramp_steps, kind="hard", form="full")
    concept = tasks.instance_of(int(s.images[s.entries[0].views[0][0]].obj_inst[0]))
    query = {tasks.instance_of(int(i)) for i in s.images[s.query[0]].obj_inst}
    assert s.answer == "no" and concept not in query
    assert any(len(concept.differing_attributes(q)) == 1 for q in query)


def test_contrast_images_pair_each_instance_with_a_look_alike():
    images = tasks.contrast_images(0, 3, 2, tasks.TaskConfig())
    assert len(images) == 8  # per instance: reference + query, and the same for a near-duplicate
    shared = []
    for ref, query in zip(images[0::2], images[1::2]):
        both = set(ref.obj_inst[ref.obj_ok].tolist()) & set(query.obj_inst[query.obj_ok].tolist())
        assert len(both) == 1
        shared.append(tasks.instance_of(both.pop()))
    assert len(shared[0].differing_attributes(shared[1])) == 1


def test_random_names_are_varied_and_never_export_names():
    rng = np.random.default_rng(0)
    names = [tasks.random_name(rng) for _ in range(300)]
    assert len(set(names)) > 250
    assert not {n.lower() for n in names} & {n.lower() for n in CONCEPT_NAMES}
    assert any(not n.isascii() for n in names) and any(" " in n for n in names)


@pytest.mark.parametrize("world", ["v1", "v2"])
def test_patch_labels_mark_the_main_object_of_a_reference_view(world):
    rng = np.random.default_rng(0)
    inst = tasks.sample_instance(rng, held_out=False, world=world)
    scene = tasks.reference_scene(inst, rng, 64)
    data = tasks.image_data(scene)
    main = scene.spec.main
    on = data.obj_frac[main].reshape(-1) >= 0.5
    assert on.sum() >= 3
    assert np.all(data.labels[1].reshape(-1)[on] == inst.colour + 1)
    assert np.all(data.labels[0].reshape(-1)[on] == inst.shape + 1)


def test_contrastive_anchors_are_the_recognisable_objects_with_their_pooling_weights():
    _, samples, extra = batch_at(_cfg(vision_steps=0), 3)
    images = [im for s in samples for im in s.images] + extra
    vision = VisionTargets.of(images)
    expected = [
        (n, int(im.obj_inst[k]))
        for n, im in enumerate(images)
        for k in range(len(im.obj_inst))
        if im.obj_ok[k] and im.obj_frac[k].sum() >= 1.0
    ]
    assert list(zip(vision.anchor_image.tolist(), vision.anchor_instance.tolist())) == expected
    assert torch.allclose(vision.anchor_weights.sum(1), torch.ones(len(expected)))
    assert vision.pixels.shape == (len(images), 64, 64, 3) and vision.labels.shape[:2] == (len(images), 4)


def test_the_raw_contrastive_loss_compares_the_pooled_features_themselves_not_the_head():
    from ego_ros.toy.losses import Heads, contrastive_loss

    tokens, dim = 4, 8
    # two images of instance 1 and one of instance 2, each object pooled from one token
    vision = VisionTargets(
        pixels=torch.zeros((3, 64, 64, 3), dtype=torch.uint8),
        labels=torch.zeros((3, 4, tokens), dtype=torch.long),
        anchor_image=torch.tensor([0, 1, 2]),
        anchor_instance=torch.tensor([1, 1, 2]),
        anchor_weights=torch.eye(tokens)[[0, 0, 0]],
    )
    apart = torch.randn(3, tokens, dim)
    apart[1, 0] = apart[0, 0]  # the same instance looks the same
    mixed = apart.clone()
    mixed[2, 0] = apart[0, 0]  # the other instance looks the same too
    heads = Heads(dim)
    low, acc = contrastive_loss(heads, apart, vision, 0.1, through_head=False)
    high, _ = contrastive_loss(heads, mixed, vision, 0.1, through_head=False)
    assert float(acc) == 1.0 and float(low) < float(high)
    feats = apart.clone().requires_grad_(True)
    contrastive_loss(heads, feats, vision, 0.1, through_head=False)[0].backward()
    assert feats.grad.abs().sum() > 0 and all(p.grad is None for p in heads.parameters())


def test_a_training_step_with_raw_contrast_reports_its_loss():
    trainer = Trainer(_cfg(vision_steps=0, raw_contrast_weight=0.5, contrast_instances=2))
    _, samples, extra = batch_at(trainer.cfg, 0)
    stats = trainer.train_step(samples, extra)
    assert np.isfinite(stats["contrast_raw"]) and 0.0 <= stats["contrast_raw_acc"] <= 1.0


def test_a_window_of_steps_is_summarised_as_means_over_steps_and_per_task_over_samples():
    def record(loss: float, per_sample: list[float], keys: list[str]) -> StepRecord:
        return StepRecord({"loss": torch.tensor(loss)}, tokens=10, images=4,
                          per_sample=torch.tensor(per_sample), task_keys=keys)

    out = summarize_steps([record(1.0, [0.5, 1.5], ["describe", "match_pos"]), record(3.0, [2.5], ["describe"])])
    assert out["loss"] == pytest.approx(2.0)
    assert out["lm_describe"] == pytest.approx(1.5) and out["lm_match_pos"] == pytest.approx(1.5)
    assert out["tokens"] == 10 and out["images"] == 4


def test_a_non_finite_loss_in_any_step_shows_in_the_window_summary():
    def record(loss: float) -> StepRecord:
        return StepRecord({"loss": torch.tensor(loss)}, tokens=1, images=1, per_sample=torch.zeros(1),
                          task_keys=["describe"])

    assert not np.isfinite(summarize_steps([record(1.0), record(float("nan")), record(2.0)])["loss"])


def test_the_training_log_says_whether_data_or_the_step_limits_speed(tmp_path: Path):
    import json

    trainer = Trainer(_cfg(steps=2), out=tmp_path)
    trainer.run(progress=False)
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "step_host_ms" in r]
    assert len(steps) == 2 and all(r["data_wait_ms"] >= 0 and r["step_host_ms"] > 0 for r in steps)


def test_patch_labels_are_the_majority_attribute_value_of_each_patch():
    from ego_ros.toy.attributes import ATTRIBUTES
    from ego_ros.toy.render import pool_labels

    for i in range(20):
        rng = np.random.default_rng([3, i])
        scene = tasks.query_scene(rng, 64, n_objects=(3, 4))
        data = tasks.image_data(scene)
        for a, attr in enumerate(ATTRIBUTES):
            lut = np.zeros(len(scene.spec.instances) + 1, dtype=np.uint8)
            lut[1:] = [getattr(inst, attr) + 1 for inst in scene.spec.instances]
            expected = pool_labels(lut[scene.labels.object], tasks.PATCH, tasks.LABEL_CLASSES[attr])
            assert np.array_equal(data.labels[a], expected), (i, attr)


def test_camera_sized_scenes_are_resized_like_the_image_processor():
    rng = np.random.default_rng(2)
    scene = tasks.query_scene(rng, (160, 120))
    data = tasks.image_data(scene)
    assert data.pixels.shape == (64, 64, 3) and data.labels.shape == (4, 8, 8)
    from ego_ros.toy.model_config import build_image_processor

    px = build_image_processor()(images=[Image.fromarray(scene.image)], return_tensors="pt")["pixel_values"][0]
    mine = torch.from_numpy(np.array(data.pixels)).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(px, mine, atol=1e-5)


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    return Trainer(_cfg())


def test_trainer_reads_recognition_probabilities_exactly_like_the_engine(trainer):
    """The trainer's sequences are the engine's: same P(yes) for the same memory and query image."""
    from ego_ros.core.engine import EgoEngine
    from ego_ros.core.memory import ConceptMemory, MemoryView

    cfg = tasks.TaskConfig(big_render_p=0.0)
    sample = tasks.match_sample(np.random.default_rng(7), cfg, 0, held_out=True, kind="pos", form="mask")
    p_trainer = trainer.yes_probabilities([sample])[0]
    engine = EgoEngine(trainer.backend)
    entry = sample.entries[0]
    img_idx, tokens = entry.views[0]
    vt = trainer.backend.encode_images([Image.fromarray(sample.images[img_idx].pixels)])[0]
    idx = torch.from_numpy(tokens)
    view = MemoryView(
        embeds=vt.embeds[idx],
        indices=idx,
        grid=(vt.rows, vt.cols),
        box=vt.box,
        image_size=vt.image_size,
        keywords=list(entry.keywords),
        description="",
        alpha=None,
        k_c=len(idx),
        importance=torch.zeros(vt.count),
    )
    engine.add_memory(
        ConceptMemory(name=entry.name, views=[view], fingerprint=trainer.backend.fingerprint(), model="toy")
    )
    p_engine = engine.recognize(Image.fromarray(sample.images[sample.query[0]].pixels))[0].probability
    assert p_trainer == pytest.approx(p_engine, abs=1e-4)


def test_packed_batches_give_the_losses_of_sequences_assembled_one_by_one(trainer):
    """The packed path (ids + one scatter of visual rows per group) equals per-sample engine assembly."""
    from ego_ros.toy.train import sequence_packer

    cfg = _cfg(vision_steps=0)
    samples = tasks.make_batch(0, 5, 7, cfg.tasks)
    extra = tasks.contrast_images(0, 5, 1, cfg.tasks)
    images, offsets = [], []
    for s in samples:
        offsets.append(len(images))
        images.extend(s.images)
    with torch.no_grad():
        feats = trainer.encode(images + extra)
        embeds, targets = trainer._sequences(samples, feats, offsets, with_answer=True)
        expected = []
        for emb, tgt in zip(embeds, targets):
            hidden, _ = trainer._lm([emb])
            t = torch.tensor(tgt)
            logits = trainer.model.lm_head(hidden[0][t != -100])
            expected.append(torch.nn.functional.cross_entropy(logits, t[t != -100]))
        packed = sequence_packer(trainer.spec).pack(0, samples, extra, group=3)
        assert len(packed.groups) == 3 and packed.n_samples == 7
        got = trainer.sample_losses(packed, feats)
    assert torch.allclose(got, torch.stack(expected), atol=1e-5)


def test_yes_probabilities_of_a_padded_batch_are_those_read_one_sample_at_a_time(trainer):
    """The language model runs without an attention mask: right padding under causal attention is never
    seen by a position that is read, so batching samples of unequal lengths changes nothing."""
    cfg = tasks.TaskConfig(big_render_p=0.0)
    samples = [
        tasks.match_sample(np.random.default_rng(i), cfg, 0, held_out=True, kind=kind, form=form)
        for i, (kind, form) in enumerate([("pos", "mask"), ("easy", "full"), ("pos", "random"), ("hard", "crop")])
    ]
    with torch.no_grad():
        images = [im for s in samples for im in s.images]
        offsets = np.cumsum([0] + [len(s.images) for s in samples[:-1]]).tolist()
        embeds, _ = trainer._sequences(samples, trainer.encode(images), offsets, with_answer=False)
    assert len({e.shape[0] for e in embeds}) > 1, "the samples must differ in length for the padding to matter"
    batched = trainer.yes_probabilities(samples, batch=len(samples))
    alone = [trainer.yes_probabilities([s])[0] for s in samples]
    assert batched == pytest.approx(alone, abs=1e-5)


def test_encoding_a_batch_gives_the_projector_output_of_each_image(trainer):
    """`Trainer.encode` returns the projector's own batched output: per image what the engine's
    `get_image_features` path gives."""
    images = [im for s in tasks.make_batch(0, 3, 3, tasks.TaskConfig()) for im in s.images]
    cfg = trainer.model.config
    with torch.no_grad():
        got = trainer.encode(images)
        px = torch.from_numpy(np.stack([im.pixels for im in images])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        out = trainer.model.model.get_image_features(
            pixel_values=px,
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        )
    assert got.shape == (len(images), trainer.spec.grid**2, cfg.text_config.hidden_size)
    assert torch.allclose(got, torch.stack(list(out.pooler_output)), atol=1e-6)


def test_a_time_budget_fits_the_number_of_steps_to_the_measured_speed(monkeypatch):
    from ego_ros.toy import train

    now = [0.0]
    monkeypatch.setattr(train.time, "monotonic", lambda: now[0])
    cfg = _cfg(steps=100000, minutes=10.0, vision_steps=0)
    planner = train._BudgetPlanner(cfg, start=0, every=100, reserve_s=20.0)
    for step in range(1, 121):  # one step per second
        now[0] = float(step)
        planner.replan(step)
    # measured from step 20 on: 1 step/s, 600 s budget - 120 s spent - 20 s reserve = 460 more steps
    assert cfg.steps == 120 + 460
    now[0] = 600.0
    assert planner.replan(130) and cfg.steps == 130  # past the budget: stop here


def test_a_resumed_run_does_not_fix_its_plan_on_the_slow_first_window(monkeypatch):
    from ego_ros.toy import train

    now = [0.0]
    monkeypatch.setattr(train.time, "monotonic", lambda: now[0])
    cfg = _cfg(steps=100000, minutes=10.0, vision_steps=0)
    planner = train._BudgetPlanner(cfg, start=5000, every=100, reserve_s=20.0)
    for step in range(5001, 5321):  # warm-up at 1 step/s up to step 5120, then 8 steps/s
        now[0] = float(step - 5000) if step <= 5120 else 120.0 + (step - 5120) / 8
        planner.replan(step)
    # the first estimate (1 step/s) planned 5580 steps, whose decay start lies behind the resume point;
    # later windows measure 8 steps/s: 145 s spent, 435 s left after the reserve, 3480 more steps
    assert cfg.steps == 5320 + 3480


def test_the_vision_first_phase_trains_only_the_vision_tower_and_projector():
    trainer = Trainer(_cfg(vision_steps=2))
    lm_before = [p.detach().clone() for p in trainer.model.model.language_model.parameters()]
    vision_before = [p.detach().clone() for p in trainer.model.model.vision_tower.parameters()]
    _, samples, extra = batch_at(trainer.cfg, 0)
    assert samples == [] and len(extra) == 4 * trainer.cfg.vision_instances
    stats = trainer.train_step(samples, extra)
    assert stats["lm"] == 0.0 and np.isfinite(stats["dense"]) and np.isfinite(stats["contrast"])
    assert all(torch.equal(a, b) for a, b in zip(lm_before, trainer.model.model.language_model.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(vision_before, trainer.model.model.vision_tower.parameters()))


def test_a_training_step_changes_the_weights_and_reports_finite_losses():
    trainer = Trainer(_cfg(vision_steps=0))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    stats = trainer.train_step(tasks.make_batch(0, 0, 4, trainer.cfg.tasks))
    assert all(np.isfinite(stats[k]) for k in ("loss", "lm", "dense", "contrast", "fimg"))
    changed = [not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters())]
    assert sum(changed) > 0.9 * len(changed)


def test_resuming_a_checkpoint_reproduces_an_uninterrupted_run(tmp_path: Path):
    straight = Trainer(_cfg(steps=4))
    straight.run(progress=False)
    first = Trainer(_cfg(steps=2), out=tmp_path)
    first.run(progress=False)
    resumed = Trainer.from_checkpoint(tmp_path / CHECKPOINT_LATEST, steps=4)
    assert resumed.step == 2
    resumed.run(progress=False)
    assert resumed.step == straight.step == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_export_writes_a_directory_the_engine_loads(tmp_path: Path):
    from ego_ros.core.engine import EgoEngine
    from ego_ros.core.loading import load_backend

    trainer = Trainer(_cfg(steps=1))
    trainer.run(progress=False)
    out = trainer.export(tmp_path / "model")
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        "ego_prompts.json",
        "TRAINING.md",
    ):
        assert (out / name).is_file(), name
    backend = load_backend(str(out))
    assert backend.prompts.recognition == "is {name} here?"
    engine = EgoEngine.load(str(out))
    img = Image.fromarray(tasks.reference_scene(held_out_instances()[0], np.random.default_rng(0), 64).image)
    engine.introduce("kona", [img])
    (rec,) = engine.recognize(img)
    assert rec.name == "kona" and 0.0 <= rec.probability <= 1.0


def test_cli_trains_checkpoints_and_exports(tmp_path: Path):
    from ego_ros.toy.train_cli import main

    out = tmp_path / "run"
    rc = main(
        [
            "--tiny",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--eval-every",
            "0",
            "--threads",
            "1",
            "--out",
            str(out),
            "--export",
            str(tmp_path / "model"),
            "--no-progress",
        ]
    )
    assert rc == 0
    assert (out / CHECKPOINT_LATEST).is_file() and (out / "train_log.jsonl").is_file()
    assert (tmp_path / "model" / "model.safetensors").is_file()
    rc = main(["--resume", str(out / CHECKPOINT_LATEST), "--steps", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    assert torch.load(out / CHECKPOINT_LATEST, weights_only=False)["step"] == 3


def test_cli_with_zero_steps_only_exports_a_checkpoint(tmp_path: Path):
    from ego_ros.toy.train_cli import main

    trainer = Trainer(_cfg(steps=2), out=tmp_path / "run")
    trainer.run(progress=False)
    ckpt = tmp_path / "run" / CHECKPOINT_LATEST
    before = ckpt.stat().st_mtime_ns
    rc = main(["--resume", str(ckpt), "--steps", "0", "--export", str(tmp_path / "model"), "--no-progress"])
    assert rc == 0
    assert ckpt.stat().st_mtime_ns == before
    assert '"step": 2' in (tmp_path / "model" / "training_state.json").read_text()
    assert "--steps 2 " in (tmp_path / "model" / "TRAINING.md").read_text()


def test_cli_exports_a_checkpoint_trained_on_cuda_without_cuda(tmp_path: Path):
    from ego_ros.toy.train_cli import main

    trainer = Trainer(_cfg(steps=1))
    ckpt = trainer.save_checkpoint(tmp_path / CHECKPOINT_LATEST)
    state = torch.load(ckpt, weights_only=False)
    state["config"]["device"] = "cuda"  # as written by the lent GPU
    torch.save(state, ckpt)
    rc = main(["--resume", str(ckpt), "--steps", "0", "--export", str(tmp_path / "model"), "--no-progress"])
    assert rc == 0 and (tmp_path / "model" / "model.safetensors").is_file()


def test_cli_refuses_a_missing_checkpoint(tmp_path: Path, capsys):
    from ego_ros.toy.train_cli import main

    assert main(["--resume", str(tmp_path / "nope.pt"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_auc_is_the_probability_a_positive_outranks_a_negative():
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.1], [0.9]) == 0.0
    assert auc([0.5], [0.5]) == 0.5


def test_the_reproduce_command_of_an_export_rebuilds_its_training_settings():
    import argparse
    import shlex

    from ego_ros.toy import train_cli
    from ego_ros.toy.train import reproduce_flags

    cfg = TrainConfig(seed=3, steps=3300, batch_size=128, lr_vision=3e-4, lr_lm=6e-4, vision_steps=300,
                      vision_instances=64, contrast_instances=16, lm_group=64, raw_contrast_weight=0.5)
    cfg.tasks.ramp_steps = 1800
    cfg.tasks.twin_weight = 0.25
    cfg.tasks.world = "v2"
    args = train_cli.add_train_arguments(argparse.ArgumentParser()).parse_args(shlex.split(reproduce_flags(cfg)))
    rebuilt = TrainConfig()
    for k, v in train_cli._overrides(args).items():
        setattr(rebuilt.tasks if k in TASK_FIELDS else rebuilt, k, v)
    assert rebuilt.to_dict() == cfg.to_dict()


def test_a_run_can_start_from_an_exported_model_instead_of_random_weights(tmp_path: Path):
    trained = Trainer(_cfg(steps=1, seed=3))
    trained.run(progress=False)
    out = trained.export(tmp_path / "model")
    warm = Trainer(_cfg(steps=1, seed=0, init=str(out)))
    for (name, a), b in zip(trained.model.state_dict().items(), warm.model.state_dict().values()):
        assert torch.equal(a.float(), b.float()), name
    assert "--init" in reproduce_flags(warm.cfg)


def test_starting_from_a_directory_of_another_spec_is_refused(tmp_path: Path):
    big = Trainer(_cfg(steps=1, tiny=False, vision_steps=0))
    out = big.export(tmp_path / "model")
    with pytest.raises(ValueError, match="do not fit"):
        Trainer(_cfg(init=str(out)))
