"""Launch the demo graph: the toy-world synthetic camera and the Ego node with the toy model.

    ros2 launch ego_ros demo.launch.py

The node introduces the concepts of config/demo_concepts.yaml at start (reference views of the
personal instance the camera shows) and reports them on /ego_node/recognitions, with 3-D points
from the camera's depth and camera_info (also on /ego_node/positions); the camera's per-frame
ground truth, 3-D points included, is on /ground_truth. `ego-ros demo` runs the same graph without launch.
Arguments: model (default toy), device (default auto), seed (camera video seed).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchDescription

PACKAGE = "ego_ros"
# Keep in step with ego_ros.ros.demo_scenario (DEMO_INSTANCE, DEMO_NAME, DEMO_QUESTION).
DEMO_INSTANCE = "red-heart-checkered-white-right"
DEMO_NAME = "kona"


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    config = os.path.join(share, "config")
    profile = os.path.join(config, "fastdds_large_images.xml")
    camera = Node(
        package=PACKAGE,
        executable="synthetic_camera",
        name="synthetic_camera",
        output="screen",
        parameters=[{
            "seed": LaunchConfiguration("seed"),
            "include": [DEMO_INSTANCE],
            "include_names": [DEMO_NAME],
            "include_p": 0.8,
        }],
    )
    ego = LifecycleNode(
        package=PACKAGE,
        executable="ego_node",
        name="ego_node",
        namespace="",
        output="screen",
        parameters=[
            os.path.join(config, "ego.yaml"),
            {
                "model": LaunchConfiguration("model"),
                "device": LaunchConfiguration("device"),
                "concepts_file": os.path.join(config, "demo_concepts.yaml"),
                "standing_questions": [f"What colour is {DEMO_NAME}?"],
                "autostart": True,
                "use_depth": True,
            },
        ],
    )
    return LaunchDescription([
        DeclareLaunchArgument("model", default_value="toy", description="Model of ego_node"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda:N"),
        DeclareLaunchArgument("seed", default_value="0", description="Seed of the camera's toy video"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile),
        camera,
        ego,
    ])
