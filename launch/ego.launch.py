"""Launch the Ego node (`ego_node`, a lifecycle node) with its parameter file.

    ros2 launch ego_ros ego.launch.py image:=/camera/color/image_raw model:=toy device:=cuda:0
    ros2 launch ego_ros ego.launch.py image:=/camera/color/image_raw use_depth:=true \
        depth:=/camera/aligned_depth_to_color/image_raw camera_info:=/camera/color/camera_info

Arguments: namespace, image (the camera topic the node's `image` input is remapped to; the node
also reads `<image>/compressed` with image_transport:=compressed), depth and camera_info (the depth
image registered to the colour camera and the colour camera's intrinsics, read with use_depth),
params_file (default config/ego.yaml), and model, device, concepts_file, autostart, use_depth, which
override params_file when given (empty: keep the file's value). Sets FASTDDS_DEFAULT_PROFILES_FILE (and Humble's
FASTRTPS_DEFAULT_PROFILES_FILE) to config/fastdds_large_images.xml so raw camera images travel
through shared memory; every process on the machine that exchanges images with the node needs the
same profile.
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription

PACKAGE = "ego_ros"
# Launch arguments that, when not empty, override the parameter of the same name in params_file.
OVERRIDES = ("model", "device", "concepts_file", "autostart", "use_depth")
# Overrides typed as YAML (true/false), as on the command line.
BOOLEAN_OVERRIDES = ("autostart", "use_depth")


def _ego_node(context, *args, **kwargs):
    overrides = {}
    for name in OVERRIDES:
        value = LaunchConfiguration(name).perform(context)
        if value != "":
            # YAML typing as on the command line: autostart:=true is a bool, model:=toy a string.
            overrides[name] = yaml.safe_load(value) if name in BOOLEAN_OVERRIDES else value
    image = LaunchConfiguration("image").perform(context)
    depth = LaunchConfiguration("depth").perform(context)
    camera_info = LaunchConfiguration("camera_info").perform(context)
    return [
        LifecycleNode(
            package=PACKAGE,
            executable="ego_node",
            name="ego_node",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[("image", image), ("image/compressed", image + "/compressed"), ("depth", depth),
                        ("camera_info", camera_info)],
        )
    ]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    profile = os.path.join(share, "config", "fastdds_large_images.xml")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("image", default_value="image", description="Camera topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("depth", default_value="depth",
                              description="Depth image registered to the colour camera (16UC1 mm or 32FC1 m)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="The colour camera's sensor_msgs/CameraInfo"),
        DeclareLaunchArgument("use_depth", default_value="",
                              description="3-D positions from depth: true or false (empty: params_file's)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "ego.yaml"),
                              description="Parameter file of ego_node"),
        DeclareLaunchArgument("model", default_value="", description="Model (empty: params_file's)"),
        DeclareLaunchArgument("device", default_value="", description="auto, cpu or cuda:N (empty: params_file's)"),
        DeclareLaunchArgument("concepts_file", default_value="",
                              description="YAML of concepts to introduce at start (empty: params_file's)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="Configure and activate at start (empty: params_file's)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile),
        OpaqueFunction(function=_ego_node),
    ])
