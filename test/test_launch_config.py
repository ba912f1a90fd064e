"""The launch files and parameter files agree with the executables and parameters that really exist.

`launch` and `launch_ros` cannot be installed here, so the launch files are read with `ast`, and the
parameter names they and config/ego.yaml use are checked against the parameters the real nodes
declare (queried over their rcl_interfaces parameter services).
"""

from __future__ import annotations

import ast
import glob
import sys
from pathlib import Path

import pytest
import yaml
from ros_env import next_domain, ros_client, ros_env, spin_until, start_process, stop_process, unique_namespace

REPO = Path(__file__).resolve().parents[1]
EGO_LAUNCH = REPO / "launch" / "ego.launch.py"
DEMO_LAUNCH = REPO / "launch" / "demo.launch.py"
LAUNCH_FILES = [EGO_LAUNCH, DEMO_LAUNCH]
EGO_YAML = REPO / "config" / "ego.yaml"
PROFILE = "fastdds_large_images.xml"
# Parameters every rclpy node has, or that rclpy adds for QoS overrides: not the node's own.
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")


# ----------------------------------------------------------------------------------------- ast reading
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _calls(tree: ast.AST, *names: str) -> list[ast.Call]:
    def name(func: ast.expr) -> str | None:
        return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None

    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and name(n.func) in names]


def _keyword(call: ast.Call, key: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == key), None)


def _module_constants(tree: ast.Module) -> dict[str, object]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def _value(node: ast.expr, constants: dict[str, object]) -> object:
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    return ast.literal_eval(node)


def _launched_nodes(path: Path) -> list[dict]:
    """Per Node/LifecycleNode call: package, executable, and parameter names set in dict literals."""
    tree = _tree(path)
    constants = _module_constants(tree)
    nodes = []
    for call in _calls(tree, "Node", "LifecycleNode"):
        names: set[str] = set()
        params = _keyword(call, "parameters")
        for item in params.elts if isinstance(params, ast.List) else ():
            if isinstance(item, ast.Dict):
                names |= {_value(k, constants) for k in item.keys}
        nodes.append({"package": _value(_keyword(call, "package"), constants),
                      "executable": _value(_keyword(call, "executable"), constants), "parameters": names})
    # ego.launch.py passes the non-empty launch arguments in OVERRIDES as parameters of its one node.
    if "OVERRIDES" in constants:
        (node,) = nodes
        node["parameters"] |= set(constants["OVERRIDES"])
    return nodes


def _setup_call() -> ast.Call:
    (call,) = _calls(_tree(REPO / "setup.py"), "setup")
    return call


def _console_scripts() -> dict[str, str]:
    entry_points = ast.literal_eval(_keyword(_setup_call(), "entry_points"))
    return dict(line.replace(" ", "").split("=", 1) for line in entry_points["console_scripts"])


def _installed_files() -> set[Path]:
    """Files setup.py's data_files install (globs evaluated from the repository root)."""
    out: set[Path] = set()
    for entry in _keyword(_setup_call(), "data_files").elts:
        sources = entry.elts[1]
        parts = sources.elts if isinstance(sources, ast.List) else [sources]
        nodes = []
        for part in parts:  # glob("a") + glob("b") is a BinOp chain
            stack = [part]
            while stack:
                n = stack.pop()
                if isinstance(n, ast.BinOp):
                    stack += [n.left, n.right]
                else:
                    nodes.append(n)
        for n in nodes:
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "glob":
                out |= {REPO / p for p in glob.glob(str(n.args[0].value), root_dir=REPO)}
            elif isinstance(n, ast.Constant):
                out.add(REPO / n.value)
    return out


# ------------------------------------------------------------------------------------------ static checks
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_defines_generate_launch_description(path):
    tree = _tree(path)
    assert "generate_launch_description" in [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_starts_only_console_scripts_of_this_package(path):
    scripts = _console_scripts()
    nodes = _launched_nodes(path)
    assert nodes
    for node in nodes:
        assert node["package"] == "ego_ros"
        assert node["executable"] in scripts, f"{node['executable']} is not a console_scripts entry of setup.py"


def test_console_scripts_of_the_launch_files_name_existing_main_functions():
    scripts = _console_scripts()
    for executable in {n["executable"] for path in LAUNCH_FILES for n in _launched_nodes(path)}:
        module, function = scripts[executable].split(":")
        source = REPO / (module.replace(".", "/") + ".py")
        assert source.is_file(), f"{executable}: {source} does not exist"
        defined = [n.name for n in _tree(source).body if isinstance(n, ast.FunctionDef)]
        assert function in defined, f"{executable}: {module} defines no {function}()"


def test_ego_launch_declares_the_documented_arguments():
    declared = {ast.literal_eval(c.args[0]) for c in _calls(_tree(EGO_LAUNCH), "DeclareLaunchArgument")}
    assert {"namespace", "image", "depth", "camera_info", "params_file", "concepts_file", "model", "device",
            "autostart", "use_depth"} <= declared


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_points_fast_dds_at_the_large_image_profile(path):
    tree = _tree(path)
    variables = [ast.literal_eval(c.args[0]) for c in _calls(tree, "SetEnvironmentVariable")]
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in variables
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert PROFILE in strings
    assert (REPO / "config" / PROFILE).is_file()


def test_config_files_the_launch_files_use_exist_and_are_installed():
    from ego_ros.ros.concepts_file import load_concepts_file

    installed = _installed_files()
    used = {REPO / "config" / n.value for path in LAUNCH_FILES for n in ast.walk(_tree(path))
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.endswith((".yaml", ".xml"))}
    assert used >= {EGO_YAML, REPO / "config" / "demo_concepts.yaml"}
    for spec in load_concepts_file(REPO / "config" / "demo_concepts.yaml"):
        used |= set(spec.images)
    for path in used:
        assert path.is_file(), f"{path} does not exist"
    missing = sorted(str(p.relative_to(REPO)) for p in used - installed)
    assert not missing, f"setup.py data_files does not install {missing}"


def test_demo_launch_shows_and_names_the_demo_concept():
    from ego_ros.ros import demo

    constants = _module_constants(_tree(DEMO_LAUNCH))
    assert (constants["DEMO_INSTANCE"], constants["DEMO_NAME"]) == (demo.DEMO_INSTANCE, demo.DEMO_NAME)


def test_ego_yaml_sets_parameters_of_ego_node_only():
    data = yaml.safe_load(EGO_YAML.read_text(encoding="utf-8"))
    assert list(data) == ["/**"]
    assert set(data["/**"]) == {"ros__parameters"}


# ------------------------------------------------------------------------------- against the real nodes
def _declared(node, executor, target: str) -> dict[str, object]:
    """All parameters of node `target` (its full name) with their values, over its parameter services."""
    from rcl_interfaces.srv import GetParameters, ListParameters
    from rclpy.parameter import parameter_value_to_python

    clients = {}

    def call(srv, suffix, request):
        if suffix not in clients:
            clients[suffix] = node.create_client(srv, f"{target}/{suffix}")
        client = clients[suffix]
        assert spin_until(executor, client.service_is_ready, 60.0), f"{target}/{suffix} did not appear"
        future = client.call_async(request)
        assert spin_until(executor, future.done, 30.0), f"{target}/{suffix} did not answer"
        return future.result()

    names = list(call(ListParameters, "list_parameters", ListParameters.Request()).result.names)
    out = {}
    for name in names:
        # One at a time: rclpy answers a request naming any unset (typed, no default) parameter with no values.
        values = call(GetParameters, "get_parameters", GetParameters.Request(names=[name])).values
        out[name] = parameter_value_to_python(values[0]) if values else None
    return out


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    """Parameters of ego_node (started with config/ego.yaml, without loading a model) and synthetic_camera."""
    tmp = tmp_path_factory.mktemp("launch_config")
    domain = next_domain()
    env = ros_env(domain, tmp / "log")
    ns = unique_namespace("launch_config")
    ego = start_process([sys.executable, "-m", "ego_ros.ros.node", "--ros-args", "--params-file", str(EGO_YAML),
                         "-p", "autostart:=false", "-r", f"__ns:={ns}"], env, tmp / "ego_node.log")
    camera = start_process([sys.executable, "-m", "ego_ros.ros.synthetic_camera", "--ros-args", "-r", f"__ns:={ns}"],
                           env, tmp / "camera.log")
    try:
        with ros_client(domain, log_dir=tmp / "log") as (node, executor):
            try:
                result = {"ego_node": _declared(node, executor, f"{ns}/ego_node"),
                          "synthetic_camera": _declared(node, executor, f"{ns}/synthetic_camera")}
            except AssertionError as exc:
                logs = "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')[-3000:]}"
                                 for p in (tmp / "ego_node.log", tmp / "camera.log"))
                raise AssertionError(f"{exc}\n{logs}") from exc
    finally:
        stop_process(ego)
        stop_process(camera)
    return result


def _own(parameters: dict[str, object]) -> set[str]:
    return {n for n in parameters if n not in ROS_PARAMETERS and not n.startswith("qos_overrides.")}


@pytest.mark.ros
def test_ego_yaml_names_only_parameters_that_ego_node_declares_with_the_values_it_reads(declared):
    params = yaml.safe_load(EGO_YAML.read_text(encoding="utf-8"))["/**"]["ros__parameters"]
    node = declared["ego_node"]
    assert set(params) - set(node) == set()
    params.pop("autostart")  # overridden on the command line so that no model loads
    assert {k: node[k] for k in params} == params


@pytest.mark.ros
def test_ego_yaml_documents_every_parameter_of_ego_node(declared):
    text = EGO_YAML.read_text(encoding="utf-8")
    undocumented = [n for n in sorted(_own(declared["ego_node"])) if f" {n}:" not in text]
    assert undocumented == []


@pytest.mark.ros
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_sets_only_parameters_the_nodes_declare(declared, path):
    by_executable = {"ego_node": declared["ego_node"], "synthetic_camera": declared["synthetic_camera"]}
    for node in _launched_nodes(path):
        unknown = node["parameters"] - set(by_executable[node["executable"]])
        assert unknown == set(), f"{path.name}: {node['executable']} declares no {sorted(unknown)}"
