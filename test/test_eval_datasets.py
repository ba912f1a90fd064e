"""Dataset readers on tiny fixtures written in the published layouts."""

import json
from pathlib import Path

import pytest
from PIL import Image

from ego_ros.eval.datasets import (
    DatasetError,
    load_dataset,
    parse_dataset_spec,
    resolve_placeholders,
    thisismy_display_name,
)


def img(path: Path, color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def make_yollava(base: Path, vqa_shape: str = "nested") -> Path:
    """``base/yollava-data/{train,test}`` with concepts bo (11 views) and mam (2 views)."""
    root = base / "yollava-data"
    for n in range(11):
        img(root / "train" / "bo" / f"{n}.png")
    img(root / "train" / "bo" / "negative_example" / "x.png")
    write_json(root / "train" / "bo" / "negative_example" / "scores.json", [])
    img(root / "train" / "mam" / "0.jpg")
    img(root / "train" / "mam" / "1.jpeg")
    for n in range(3):
        img(root / "test" / "bo" / f"{n}.png")
    img(root / "test" / "mam" / "0.png")
    qa = {
        "question": "What is the primary color of sks's fur?",
        "options": {"A": "Brown", "B": "Grey"},
        "correct_answer": "A",
    }
    if vqa_shape == "nested":
        data = {"bo": {"./yollava-data/test/bo/0.png": qa, "./yollava-data/test/bo/9.png": qa}}
    else:
        data = {"./yollava-data/test/bo/0.png": dict(qa, question="Is <sks> sleeping?")}
    write_json(base / "yollava-visual-qa.json", data)
    return root


def test_yollava_reads_concepts_tests_and_vqa(tmp_path):
    make_yollava(tmp_path)
    ds = load_dataset(f"yollava:{tmp_path}", views=5)
    assert [c.name for c in ds.concepts] == ["bo", "mam"]
    bo = ds.concept("bo")
    assert [p.name for p in bo.reference_images] == ["0.png", "1.png", "2.png", "3.png", "4.png"]
    assert bo.available_views == 11  # negative_example/ is not a view
    assert len(ds.recognition) == 4 and {s.concepts for s in ds.recognition} == {("bo",), ("mam",)}
    assert ds.tasks == ("recognition", "vqa")
    (q,) = ds.vqa  # 9.png does not exist: skipped and noted
    assert q.question == "What is the primary color of bo's fur?"
    assert q.raw_question.startswith("What is the primary color of sks")
    assert q.answer == "A" and q.options_dict == {"A": "Brown", "B": "Grey"} and q.concepts == ("bo",)
    assert q.image == tmp_path / "yollava-data" / "test" / "bo" / "0.png"
    assert any("1 of 2 questions skipped" in n for n in ds.notes)
    assert any("fewer than 5" in n and "mam" in n for n in ds.notes)


def test_views_are_the_first_in_natural_order(tmp_path):
    root = make_yollava(tmp_path)
    img(root / "train" / "bo" / "10.png")
    assert [p.name for p in load_dataset(f"yollava:{root}", views=1).concept("bo").reference_images] == ["0.png"]
    every = load_dataset(f"yollava:{root}", views=20).concept("bo").reference_images
    assert [p.name for p in every] == [f"{n}.png" for n in range(11)]  # lexical order would put 10 after 1


def test_yollava_flat_vqa_shape_uses_the_image_folder_as_concept(tmp_path):
    make_yollava(tmp_path, vqa_shape="flat")
    (q,) = load_dataset(f"yollava:{tmp_path}/yollava-data").vqa
    assert q.concepts == ("bo",) and q.question == "Is bo sleeping?"


def test_yollava_test_folder_without_train_concept_is_an_error(tmp_path):
    root = make_yollava(tmp_path)
    img(root / "test" / "ghost" / "0.png")
    with pytest.raises(DatasetError, match="ghost"):
        load_dataset(f"yollava:{root}")


def test_missing_layout_names_the_path_and_what_was_expected(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset(f"yollava:{tmp_path}")
    assert str(tmp_path) in str(err.value) and "train/<concept>/" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_malformed_vqa_json_is_reported_with_its_file(tmp_path):
    make_yollava(tmp_path)
    (tmp_path / "yollava-visual-qa.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"yollava-visual-qa\.json: valid JSON"):
        load_dataset(f"yollava:{tmp_path}")


def test_vqa_answer_must_be_one_of_the_options(tmp_path):
    make_yollava(tmp_path)
    write_json(
        tmp_path / "yollava-visual-qa.json",
        {"bo": {"test/bo/0.png": {"question": "q", "options": {"A": "x", "B": "y"}, "correct_answer": "C"}}},
    )
    with pytest.raises(DatasetError, match="answer letter"):
        load_dataset(f"yollava:{tmp_path}")


def test_vqa_entry_without_question_is_rejected(tmp_path):
    make_yollava(tmp_path)
    write_json(tmp_path / "yollava-visual-qa.json", [{"image": "test/bo/0.png", "answer": "x"}])
    with pytest.raises(DatasetError, match="'question'"):
        load_dataset(f"yollava:{tmp_path}")


def make_myvlm(base: Path) -> Path:
    for n in range(8):
        img(base / "data" / "colorful_teapot" / f"{n}.jpg")
    for n in range(3):
        img(base / "data" / "my_cat" / f"IMG_{n}.JPG")
    write_json(base / "data" / "colorful_teapot" / "captions.json", {"5.jpg": ["teapot on a shelf"]})
    return base


def test_myvlm_split_keeps_reference_views_out_of_the_test_set(tmp_path):
    make_myvlm(tmp_path)
    one = load_dataset(f"myvlm:{tmp_path}", views=1)
    five = load_dataset(f"myvlm:{tmp_path}", views=5)
    teapot1, teapot5 = one.concept("colorful teapot"), five.concept("colorful teapot")
    assert [p.name for p in teapot1.reference_images] == ["0.jpg"]
    assert [p.name for p in teapot5.reference_images] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    tests1 = [s.image.name for s in one.recognition if s.concepts == ("colorful teapot",)]
    assert tests1 == ["5.jpg", "6.jpg", "7.jpg"]
    assert [s.image for s in one.recognition] == [s.image for s in five.recognition]  # same test set
    cat = five.concept("my cat")
    assert [p.name for p in cat.reference_images] == ["IMG_0.JPG", "IMG_1.JPG"]  # pool = n - 1
    refs = {p for c in five.concepts for p in c.reference_images}
    assert not refs & {s.image for s in five.recognition}
    assert five.tasks == ("recognition", "captioning")
    assert next(c for c in five.captions if c.image.name == "5.jpg").references == ("teapot on a shelf",)


def test_myvlm_concept_with_one_image_is_an_error(tmp_path):
    img(tmp_path / "solo" / "0.jpg")
    with pytest.raises(DatasetError, match="at least two images"):
        load_dataset(f"myvlm:{tmp_path}")


@pytest.mark.parametrize(
    "label, display, category",
    [
        ("Zaks dog kona-dog", "Zak's dog kona", "dog"),
        ("Sherry-woman", "Sherry", "woman"),
        ("Alexs everyday bag-bag", "Alex's everyday bag", "bag"),
        ("Caseys boosted board-skateboard", "Casey's boosted board", "skateboard"),
        ("Reynards work chair", "Reynard's work chair", None),
        ("Boss chair-chair", "Boss chair", "chair"),  # "ss" is not a possessive
        ("Casey", "Casey", None),
    ],
)
def test_thisismy_display_name_rule(label, display, category):
    assert thisismy_display_name(label) == (display, category)


def test_display_name_override_wins():
    assert (
        thisismy_display_name("Gabs puppy lili-dog", {"Gabs puppy lili": "Gab's puppy Lili"})[0] == "Gab's puppy Lili"
    )


def make_thisismy(base: Path) -> Path:
    single = base / "This-is-My-Img" / "Single-concept"
    for label in ("Zaks dog kona-dog", "Nikkis car-car"):
        img(single / "train" / label / "1.png")
        img(single / "train" / label / "0.png")
        img(single / "test" / "Positive" / label / "0.png")
    img(single / "test" / "Negative (Hard)" / "Nikkis car-car" / "0.png")
    write_json(
        single / "this-is-my-visual-qa-ambiguity.json",
        {
            "Zaks dog kona": {
                "./test/Positive/Zaks dog kona-dog/0.png": {
                    "question": "What is <sks> doing?",
                    "options": {"A": "Running", "B": "Sleeping"},
                    "correct_answer": "B",
                }
            }
        },
    )
    return base / "This-is-My-Img"


def test_thisismy_single_reads_positive_split_and_names(tmp_path):
    root = make_thisismy(tmp_path)
    ds = load_dataset(f"thisismy:{root}", views=1)
    assert sorted(c.name for c in ds.concepts) == ["Nikki's car", "Zak's dog kona"]
    kona = ds.concept("Zak's dog kona")
    assert kona.label == "Zaks dog kona-dog" and kona.category == "dog"
    assert [p.name for p in kona.reference_images] == ["0.png"]
    assert len(ds.recognition) == 2  # Negative (Hard)/ is not read
    (q,) = ds.vqa
    assert q.question == "What is Zak's dog kona doing?" and q.answer == "B"
    assert q.concepts == ("Zak's dog kona",)


def test_thisismy_display_names_file_overrides_the_rule(tmp_path):
    root = make_thisismy(tmp_path)
    write_json(root / "Single-concept" / "display_names.json", {"Zaks dog kona-dog": "Zak's dog Kona"})
    ds = load_dataset(f"thisismy:{root}")
    assert "Zak's dog Kona" in [c.name for c in ds.concepts]
    assert ds.vqa[0].question == "What is Zak's dog Kona doing?"


def make_multi(base: Path, vqa: str = "list") -> Path:
    multi = base / "Multi-concept"
    labels = ["Zak-man", "Zaks dog kona-dog", "Casey-man", "Caseys boosted board-skateboard"]
    for label in labels:
        img(multi / "train" / label / "0.png")
    for n in range(2):
        img(multi / "test" / "Zak_and_Zaks dog kona" / f"{n}.png")
        img(multi / "test" / "Casey_and_Caseys boosted board" / f"{n}.png")
    if vqa == "list":
        data = [
            {
                "image": "Multi-concept/test/Zak_and_Zaks dog kona/0.png",
                "question": "What is Zak holding?",
                "answer": "a leash",
                "concepts": ["Zak", "Zaks dog kona"],
            },
            {"image": "test/Casey_and_Caseys boosted board/1.png", "question": "Where is Casey?", "answer": "park"},
        ]
    else:
        data = {
            "Casey_Caseys boosted board": {
                "./test/Casey_and_Caseys boosted board/0.png": {"question": "What does Casey ride?", "answer": "board"}
            }
        }
    write_json(multi / "VQA" / "pairs.json", data)
    return base


def test_thisismy_multi_reads_pairs_and_open_vqa_from_the_toy_list_shape(tmp_path):
    make_multi(tmp_path)
    ds = load_dataset(f"thisismy-multi:{tmp_path}")
    assert ds.multi_concept
    assert ds.groups() == [("Casey", "Casey's boosted board"), ("Zak", "Zak's dog kona")]
    assert len(ds.recognition) == 4 and len(ds.captions) == 4
    assert ds.tasks == ("recognition", "vqa", "captioning")
    first, second = ds.vqa
    assert first.concepts == ("Zak", "Zak's dog kona") and not first.is_multiple_choice
    assert first.answer == "a leash"
    assert second.concepts == ("Casey", "Casey's boosted board")  # from the image's pair folder


def test_thisismy_multi_reads_the_nested_pair_key_shape(tmp_path):
    make_multi(tmp_path, vqa="nested")
    (q,) = load_dataset(f"thisismy-multi:{tmp_path}/Multi-concept").vqa
    assert q.concepts == ("Casey", "Casey's boosted board") and q.answer == "board"


def test_thisismy_multi_unknown_pair_folder_is_an_error(tmp_path):
    make_multi(tmp_path)
    img(tmp_path / "Multi-concept" / "test" / "Zak_and_Nobody" / "0.png")
    with pytest.raises(DatasetError, match="Zak_and_Nobody"):
        load_dataset(f"thisismy-multi:{tmp_path}")


def make_rap(base: Path, test: str = "json") -> Path:
    names = ["Anya", "Bond", "Baby_Q", "unused_cat"]
    for n in names:
        img(base / "database" / f"{n}.jpg")
    img(base / "database" / "Anya_2.jpg")
    write_json(
        base / "database.json",
        {
            "concept_dict": {
                f"<{n}>": {"name": n, "image": f"./database/{n}.jpg", "info": "...", "category": "person"}
                for n in names
            },
            "path_to_concept": {**{f"./database/{n}.jpg": f"<{n}>" for n in names}, "./database/Anya_2.jpg": "<Anya>"},
        },
    )
    img(base / "query" / "1.jpg")
    img(base / "query" / "2.jpg")
    if test == "json":
        write_json(
            base / "test.json", {"query/1.jpg": ["<Anya>", "Bond"], "/elsewhere/query/2.jpg": ["Baby_Q", "Anya"]}
        )
    else:
        img(base / "test" / "Anya_and_Bond" / "1.jpg")
    return base


def test_rap_reads_database_and_test_json(tmp_path):
    make_rap(tmp_path)
    ds = load_dataset(f"rap:{tmp_path}/database.json", views=5)
    assert [c.name for c in ds.concepts] == ["Anya", "Bond", "Baby_Q"]  # unused_cat is not tested
    assert [p.name for p in ds.concept("Anya").reference_images] == ["Anya.jpg", "Anya_2.jpg"]
    assert [s.concepts for s in ds.recognition] == [("Anya", "Bond"), ("Baby_Q", "Anya")]
    assert ds.recognition[1].image == tmp_path / "query" / "2.jpg"  # found by its trailing path
    assert ds.multi_concept and any("not named by the test set" in n for n in ds.notes)


def test_rap_reads_pair_folders_when_there_is_no_test_json(tmp_path):
    make_rap(tmp_path, test="folders")
    ds = load_dataset(f"rap:{tmp_path}")
    assert [s.concepts for s in ds.recognition] == [("Anya", "Bond")]


def test_rap_database_without_concept_dict_is_an_error(tmp_path):
    write_json(tmp_path / "database.json", {"path_to_concept": {}})
    with pytest.raises(DatasetError, match="concept_dict"):
        load_dataset(f"rap:{tmp_path}")


def make_videoqa(base: Path) -> Path:
    for n in range(3):
        img(base / "refs" / "kona" / f"{n}.png")
    for n in range(12):
        img(base / "clips" / "c1" / f"{n:04d}.jpg")
    img(base / "clips" / "c2" / "a.png")
    write_json(
        base / "videoqa.json",
        {
            "concepts": [
                {"name": "Kona", "reference_dir": "refs/kona"},
                {"name": "Zak", "images": ["refs/kona/0.png"]},
            ],
            "items": [
                {
                    "id": "q1",
                    "frames_dir": "clips/c1",
                    "question": "What is <sks> doing?",
                    "options": {"A": "running", "B": "sleeping"},
                    "answer": "A",
                    "concepts": ["Kona"],
                },
                {
                    "frames": ["clips/c2/a.png"],
                    "question": "Who walks Kona?",
                    "answer": "Zak",
                    "concepts": ["Kona", "Zak"],
                },
            ],
        },
    )
    return base


def test_videoqa_reads_the_documented_layout(tmp_path):
    make_videoqa(tmp_path)
    ds = load_dataset(f"videoqa:{tmp_path}", views=1)
    assert ds.tasks == ("video_qa",)
    first, second = ds.videos
    assert len(first.frames) == 12 and first.question == "What is Kona doing?" and first.answer == "A"
    assert second.id == "1" and not second.is_multiple_choice and second.concepts == ("Kona", "Zak")


def test_videoqa_unknown_concept_is_an_error(tmp_path):
    make_videoqa(tmp_path)
    data = json.loads((tmp_path / "videoqa.json").read_text())
    data["items"][0]["concepts"] = ["Rex"]
    write_json(tmp_path / "videoqa.json", data)
    with pytest.raises(DatasetError, match="Rex"):
        load_dataset(f"videoqa:{tmp_path}/videoqa.json")


def test_dataset_spec_parsing():
    spec = parse_dataset_spec("thisismy-multi:/data/This-is-My-Img")
    assert (spec.kind, spec.path) == ("thisismy-multi", Path("/data/This-is-My-Img"))
    with pytest.raises(DatasetError, match="unknown dataset kind 'coco'"):
        parse_dataset_spec("coco:/data")
    with pytest.raises(DatasetError, match="KIND:PATH"):
        parse_dataset_spec("/data/yollava")


def test_views_must_be_positive(tmp_path):
    make_yollava(tmp_path)
    with pytest.raises(ValueError, match="views"):
        load_dataset(f"yollava:{tmp_path}", views=0)


def test_placeholders_resolve_only_whole_tokens():
    from ego_ros.eval.datasets import Concept

    bo = Concept("bo", "bo", "bo", (), 0)
    assert resolve_placeholders("Does sks like what <sks> asks? <bo>!", [bo]) == "Does bo like what bo asks? bo!"
