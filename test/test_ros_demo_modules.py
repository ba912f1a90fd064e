"""Specification of the demo's module layout: names moved out of `ego_ros.ros.demo` stay importable from it
as the very objects of their new homes, and each part imports on its own without rclpy."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from ego_ros.ros import demo

#: Public names of the former one-module `ego_ros.ros.demo`, by the module that holds them now.
MOVED: dict[str, tuple[str, ...]] = {
    "demo_scenario": ("DEMO_CLIP_CYCLE", "DEMO_CLIP_SECONDS", "DEMO_INCLUDE_P", "DEMO_INSTANCE", "DEMO_MAX_OBJECTS",
                      "DEMO_NAME", "DEMO_NOTES", "DEMO_OBJECT_SIZE", "DEMO_QUESTION", "DEMO_SIGNATURE",
                      "DEMO_VIEWS", "DEMO_VIEW_SEED", "DEMO_VIEW_SIZE", "demo_camera_params", "demo_instance",
                      "demo_lookalike", "demo_lookalikes"),
    "demo_concepts": ("reference_views", "write_demo_concepts"),
    "child_processes": ("PROFILE_NAME", "Child", "find_profile", "python_module_command", "stop_child"),
    "demo_graph": ("DEMO_DOMAINS", "NODE_NAME", "DemoError", "RosGraph", "Sample"),
}  # fmt: skip
PARTS = [*MOVED, "demo"]


@pytest.mark.parametrize(("home", "name"), [(home, name) for home, names in MOVED.items() for name in names])
def test_a_name_moved_out_of_demo_is_still_the_same_object_there(home, name):
    home_module = importlib.import_module(f"ego_ros.ros.{home}")
    assert name in demo.__all__
    assert getattr(demo, name) is getattr(home_module, name)


@pytest.mark.parametrize("part", PARTS)
def test_each_part_of_the_demo_imports_first_and_alone_without_rclpy(part):
    # A fresh interpreter: an import cycle among the parts fails when one of them is imported first.
    code = f"import sys, ego_ros.ros.{part}; print('rclpy' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]
