import zipfile

import pytest
from metarec.data.movielens import read_ml1m, read_ml100k
from metarec.errors import DataFormatError, DataSourceNotFoundError


def test_reads_the_official_100k_layout(make_ml100k):
    dataset = read_ml100k(make_ml100k())
    assert dataset.summary() == {"users": 3, "items": 3, "interactions": 6}
    user = dataset.users.set_index("user_id").loc[1]
    assert (
        user["age"],
        user["age_bucket"],
        user["gender"],
        user["occupation"],
        user["zip_prefix"],
    ) == (24, "18-24", "M", "technician", "857")
    items = dataset.items.set_index("item_id")
    assert items.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert items.loc[3, "title"] == "Café (1994)"  # u.item is latin-1
    assert items.loc[3, "release_year"] == 1994  # no release date: year from the title
    assert dataset.interactions["event_timestamp"].dt.tz is not None
    assert sorted(dataset.interactions["interaction_id"]) == list(range(1, 7))


def test_reads_an_extracted_folder(make_ml100k, tmp_path):
    with zipfile.ZipFile(make_ml100k()) as archive:
        archive.extractall(tmp_path / "extracted")
    assert read_ml100k(tmp_path / "extracted").summary()["interactions"] == 6


def test_reads_the_official_1m_layout(ml1m_zip):
    dataset = read_ml1m(ml1m_zip)
    users = dataset.users.set_index("user_id")
    assert users.loc[1, "occupation"] == "K-12 student"
    assert users.loc[2, "age_bucket"] == "56+"
    assert dataset.items.set_index("item_id").loc[1, "release_year"] == 1995
    assert len(dataset.interactions) == 3


def test_truncated_zip_names_the_archive(make_ml100k, tmp_path):
    archive = make_ml100k()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataFormatError, match="truncated or corrupted") as error:
        read_ml100k(truncated)
    assert "truncated.zip" in str(error.value)


def test_non_numeric_rating_names_file_and_line(make_ml100k):
    bad = "1\t1\t5\t874965758\n1\t2\tfive\t876893171\n"
    with pytest.raises(DataFormatError) as error:
        read_ml100k(make_ml100k(u_data=bad))
    message = str(error.value)
    assert "u.data, line 2" in message and "rating 'five' is not an integer" in message
    assert "Fix:" in message


def test_missing_user_file_is_named(make_ml100k):
    with pytest.raises(DataSourceNotFoundError, match=r"u\.user"):
        read_ml100k(make_ml100k(u_user=None))


def test_wrong_separator_is_detected(make_ml100k):
    comma = "1,1,5,874965758\n1,2,3,876893171\n"
    with pytest.raises(
        DataFormatError,
        match=r"line 1: expected 4 tab-separated fields, found 1\. It looks ','-separated",
    ):
        read_ml100k(make_ml100k(u_data=comma))


def test_missing_path(tmp_path):
    with pytest.raises(DataSourceNotFoundError, match=r"absent\.zip"):
        read_ml100k(tmp_path / "absent.zip")


def test_empty_ratings_file(make_ml100k):
    with pytest.raises(DataFormatError, match="empty"):
        read_ml100k(make_ml100k(u_data=""))
