import pytest

from avemo.ids import EMOTIONS, parse_clip_id
from avemo.errors import BadClipName


def test_parses_all_seven_fields():
    clip = parse_clip_id("Actor_12/01-01-05-02-01-02-12.mp4")
    assert (clip.modality, clip.vocal_channel, clip.emotion, clip.intensity) == (1, 1, 5, 2)
    assert (clip.statement, clip.repetition, clip.actor) == (1, 2, 12)
    assert EMOTIONS[clip.label] == "angry"
    assert clip.gender == "female" and parse_clip_id("01-01-05-02-01-02-11.wav").gender == "male"
    assert clip.stem == "01-01-05-02-01-02-12"
    row = clip.as_row()
    assert row["emotion"] == "angry" and row["modality"] == "audio-video" and row["intensity"] == "strong"


@pytest.mark.parametrize("name, fragment", [
    ("holiday.mp4", "not a RAVDESS name"),
    ("01-01-09-01-01-01-01.mp4", "emotion 09"),
    ("01-01-03-01-01-01-25.mp4", "actor 25"),
    ("04-01-03-01-01-01-01.mp4", "modality 04"),
    ("01-01-01-02-01-01-01.mp4", "neutral has no strong intensity"),
    ("01-01-03-01-01-01.mp4", "not a RAVDESS name"),
])
def test_rejects_names_outside_the_scheme_naming_the_file(name, fragment):
    with pytest.raises(BadClipName) as err:
        parse_clip_id(name)
    assert name in str(err.value) and fragment in str(err.value)
