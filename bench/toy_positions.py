"""3-D positions of the demo's concept from the synthetic camera's depth, through the engine without ROS.

The node's 3-D rule (ego_ros/ros/depth.py: median depth over the inner half of the located box,
back-projected at the peak through the camera's K) applied to the toy model's locations on the demo
camera's frames (640x480, registered depth from ego_ros/ros/synthetic_depth.py), against the camera's
exact ground truth (the visible mask's centroid back-projected at the object's depth). For every sampled
frame where the concept is recognisable: the 3-D error (Euclidean, and its depth and lateral parts),
whether the peak lies on the concept's mask, and whether a 3-D point came out at all; over all such frames
and over those the engine judges present (what the node publishes with locate=present). The percentiles
set the tolerance of the node's end-to-end 3-D test (test/test_ros_positions.py).

Usage: python bench/toy_positions.py [--model toy] [--seeds 4] [--clips 3] [--every 15]
       [--out bench/results/toy_positions.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import write_result  # noqa: E402

from ego_ros.core.engine import EgoEngine  # noqa: E402
from ego_ros.ros.demo_concepts import reference_views  # noqa: E402
from ego_ros.ros.demo_scenario import DEMO_INCLUDE_P, DEMO_INSTANCE, DEMO_NAME  # noqa: E402
from ego_ros.ros.depth import DepthFrame, position  # noqa: E402
from ego_ros.ros.synthetic_camera import ToyCamera  # noqa: E402
from ego_ros.ros.synthetic_depth import scene_depth  # noqa: E402
from ego_ros.toy import world  # noqa: E402
from ego_ros.toy.video import render_frame  # noqa: E402


def summary(errors: list[float]) -> dict[str, float]:
    if not errors:
        return {}
    a = np.asarray(errors)
    out = {"n": len(a), "mean": round(float(a.mean()), 4)}
    out.update({f"p{q}": round(float(np.percentile(a, q)), 4) for q in (50, 75, 90, 95)})
    out["max"] = round(float(a.max()), 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="toy")
    p.add_argument("--seeds", type=int, default=4, help="camera seeds 0..N-1 (the demo uses seed 0)")
    p.add_argument("--clips", type=int, default=3, help="first clips of each seed's stream")
    p.add_argument("--every", type=int, default=15, help="take every Nth frame of a 30 Hz clip")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/toy_positions.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    inst = world.Instance.from_key(DEMO_INSTANCE)
    engine = EgoEngine.load(args.model)
    engine.introduce(DEMO_NAME, [Image.fromarray(v) for v in reference_views()], replace_existing=True)
    cases = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        camera = ToyCamera(seed, include=[DEMO_INSTANCE], include_p=DEMO_INCLUDE_P)
        stream, pinhole = camera.stream, camera.pinhole
        k = np.asarray(pinhole.k).reshape(3, 3)
        floor = pinhole.floor_depth()
        for c in range(args.clips):
            clip = stream.make_clip(c)
            for i in range(0, clip.n_frames, args.every):
                frame = render_frame(clip, i, stream.size, c)
                if inst not in frame.recognisable:
                    continue
                j = frame.scene.instances.index(inst)
                depth, truths = scene_depth(frame.scene, pinhole, floor)
                truth = truths[j]
                rec = engine.locate(Image.fromarray(frame.image), DEMO_NAME)
                loc = rec.location
                xyz, why = position(DepthFrame(0.0, depth), k, loc.box, loc.point, (pinhole.width, pinhole.height))
                px, py = int(loc.point[0]), int(loc.point[1])
                case = {"seed": seed, "clip": c, "frame": i, "present": bool(rec.present),
                        "on_mask": bool(frame.masks[j][py, px]), "point": xyz is not None, "why": why}
                if xyz is not None:
                    d = np.subtract(xyz, truth.position)
                    case.update(error_m=float(np.linalg.norm(d)), depth_error_m=float(abs(d[2])),
                                lateral_error_m=float(np.hypot(d[0], d[1])), truth_z_m=truth.depth_m)
                cases.append(case)
    seconds = time.perf_counter() - t0

    def block(sel: list[dict]) -> dict:
        with_point = [c for c in sel if c["point"]]
        return {"frames": len(sel), "with_point": len(with_point),
                "peak_on_mask": round(sum(c["on_mask"] for c in sel) / max(1, len(sel)), 4),
                "error_m": summary([c["error_m"] for c in with_point]),
                "depth_error_m": summary([c["depth_error_m"] for c in with_point]),
                "lateral_error_m": summary([c["lateral_error_m"] for c in with_point]),
                "error_when_peak_on_mask_m": summary([c["error_m"] for c in with_point if c["on_mask"]])}

    result = {"model": args.model, "fingerprint": engine.backend.fingerprint(), "concept": DEMO_INSTANCE,
              "camera": "640x480, synthetic_depth defaults", "camera_seeds": list(range(args.seeds)),
              "clips_per_seed": args.clips, "frame_every": args.every,
              "all_recognisable": block(cases), "judged_present": block([c for c in cases if c["present"]]),
              "seconds": round(seconds, 1), "machine": "2-core CPU build machine, shared (contended)",
              "cases": cases}
    write_result(Path(args.out), result, print)


if __name__ == "__main__":
    main()
