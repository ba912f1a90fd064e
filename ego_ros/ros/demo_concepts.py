"""The demo concept's reference views, and ``config/demo_concepts.yaml`` with its PNGs written from them.

Apart from the run because the benchmarks and tests introduce the demo's concept from these same views
without ROS, and the committed concept file (which `launch/demo.launch.py` passes to the node) is
regenerated from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .demo_graph import DemoError
from .demo_scenario import DEMO_NAME, DEMO_NOTES, DEMO_VIEW_SEED, DEMO_VIEW_SIZE, DEMO_VIEWS, demo_instance


def reference_views(n: int = DEMO_VIEWS, size: int = DEMO_VIEW_SIZE, seed: int = DEMO_VIEW_SEED,
                    instance_key: str | None = None) -> list[np.ndarray]:
    """Reference views (HxWx3 uint8 RGB) of `instance_key` (default: the demo's object in the default
    world): view i comes from ``default_rng([seed, i])``."""
    from ..toy import world

    inst = world.Instance.from_key(instance_key) if instance_key is not None else demo_instance()
    return [world.reference_scene(inst, np.random.default_rng([seed, i]), size=size).image for i in range(n)]


def write_demo_concepts(config_dir: str | Path) -> Path:
    """Write ``demo_concepts.yaml`` and its reference PNGs (``demo_concepts/<name>_<i>.png``) under
    `config_dir`; deterministic (same bytes every time). Returns the YAML path."""
    import cv2

    config_dir = Path(config_dir)
    folder = config_dir / "demo_concepts"
    folder.mkdir(parents=True, exist_ok=True)
    rel = []
    for i, rgb in enumerate(reference_views()):
        path = folder / f"{DEMO_NAME}_{i}.png"
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise DemoError(f"could not encode {path}")
        path.write_bytes(buf.tobytes())
        rel.append(f"demo_concepts/{path.name}")
    yaml_path = config_dir / "demo_concepts.yaml"
    lines = [
        "# Concepts the Ego node introduces at start (parameter concepts_file), used by launch/demo.launch.py.",
        "# name -> reference images (paths relative to this file) and optional notes.",
        f"# The images are toy-world reference views of the held-out instance {demo_instance().key}, which the",
        "# synthetic camera of the demo shows; regenerate them with:",
        "#   python -m ego_ros.ros.demo write-concepts config",
        f"{DEMO_NAME}:",
        "  images:",
        *(f"    - {r}" for r in rel),
        f'  notes: "{DEMO_NOTES}"',
        "",
    ]
    yaml_path.write_text("\n".join(lines), encoding="utf-8")
    return yaml_path
