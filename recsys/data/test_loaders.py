"""Readers: the published formats, real files when present, and errors naming file and line."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA
from recsys.data import DataFormatError, Domain, load_dataset


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_movielens_csv_with_quoted_titles(tmp_path: Path) -> None:
    write(tmp_path / "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Animation|Children\n'
          '2,"American President, The (1995)",Comedy|Drama|Romance\n3,Untitled,(no genres listed)\n')
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,4.0,964981247\n"
          "2,2,3.5,964982224\n")
    dataset = load_dataset(str(tmp_path))
    assert dataset.n_users == 2 and dataset.n_interactions == 3
    president = dataset.items[1]
    assert president.title == "American President, The" and president.year == 1995
    assert president.genres == ("Comedy", "Drama", "Romance") and president.domain is Domain.MOVIE
    assert dataset.items[2].genres == () and dataset.items[2].year is None
    assert dataset.timestamps is not None and dataset.timestamps[0] == 964982703


def test_csv_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "movies.csv", "movieId,title,genres\n1,Toy Story (1995),Animation\n")
    ratings = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,1,4.0,soon\n")
    with pytest.raises(DataFormatError) as error:
        load_dataset(str(tmp_path))
    assert error.value.path == ratings and error.value.line == 3
    assert str(error.value).startswith(f"{ratings}:3:") and "timestamp" in str(error.value)


def test_ml1m_dat_ratings_and_fixed_split(tmp_path: Path) -> None:
    movies = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)::Adventure\n3::Heat (1995)::Action\n"
    write(tmp_path / "movies.dat", movies)
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    with gzip.open(tmp_path / "ratings-users-1-2.dat.gz", "wt") as handle:
        handle.write("1::1::5::978300760\n1::2::3::978302109\n2::3::4::978301968\n")
    dataset = load_dataset(str(tmp_path))
    assert dataset.n_interactions == 3 and dataset.timestamps is not None and dataset.test_mask is None
    assert dataset.user_feature_cardinalities == [3, 3, 3]
    write(tmp_path / "split" / "train.txt", "0 0 1\n1 2\n")
    write(tmp_path / "split" / "test.txt", "0 2\n1 0\n")
    fixed = load_dataset(str(tmp_path))
    assert fixed.test_mask is not None and fixed.test_mask.sum() == 2
    assert [fixed.items[i].item_id for i in fixed.item_idx[fixed.test_mask]] == ["3", "1"]


def test_recbole_atomic_and_malformed_header(tmp_path: Path) -> None:
    write(tmp_path / "tiny.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t5\n")
    write(tmp_path / "tiny.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
          "10\tHeat\t1995\tAction Crime\n")
    dataset = load_dataset(str(tmp_path))
    assert dataset.items[0].genres == ("Action", "Crime") and dataset.items[0].year == 1995
    write(tmp_path / "tiny.inter", "user_id\titem_id\n1\t10\n")
    with pytest.raises(DataFormatError, match=r"tiny\.inter:1: header column 'user_id'"):
        load_dataset(str(tmp_path))


def test_anime_types_become_domains(tmp_path: Path) -> None:
    write(tmp_path / "anime_info.dat", "anime_ids\tname\tgenre\ttype\tepisodes\trating\tmembers\n"
          "1\tKimi no Na wa.\tDrama, Romance\tMovie\t1\t9.37\t200630\n2\tFMA\tAction\tTV\t64\t9.26\t793665\n"
          "3\tSome OVA\tAction\tOVA\t2\t7.0\t100\n")
    write(tmp_path / "anime_history.dat", "User_ID\tAnime_ID\tFeedback\n1\t1\t1\n1\t2\t1\n1\t3\t1\n")
    dataset = load_dataset(str(tmp_path))
    assert [it.domain for it in dataset.items] == [Domain.MOVIE, Domain.TV]
    assert dataset.items[0].genres == ("Drama", "Romance")
    assert dataset.n_interactions == 2  # the OVA is outside both domains


def test_unknown_folder_and_format(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not found"):
        load_dataset(str(tmp_path / "missing"))
    with pytest.raises(DataFormatError, match="unknown data set format"):
        load_dataset(str(tmp_path))


def test_synthetic_is_seeded_and_has_both_domains() -> None:
    first = load_dataset("synthetic:n_users=200,n_items=500,seed=5")
    second = load_dataset("synthetic:n_users=200,n_items=500,seed=5")
    assert np.array_equal(first.item_idx, second.item_idx)
    assert {it.domain for it in first.items} == {Domain.MOVIE, Domain.TV}
    counts = np.bincount(first.item_idx, minlength=first.n_items)
    assert counts.max() > 5 * np.median(counts)  # power-law popularity
    with pytest.raises(ValueError, match="n_users"):
        load_dataset("synthetic:users=5")


@pytest.mark.skipif(not (SHARED_DATA / "ml-100k").is_dir(), reason="shared data not present")
def test_real_ml100k_and_anime() -> None:
    ml100k = load_dataset(str(SHARED_DATA / "ml-100k"))
    assert (ml100k.n_users, ml100k.n_items, ml100k.n_interactions) == (943, 1682, 100000)
    assert ml100k.items[0].title == "Toy Story" and ml100k.items[0].year == 1995
    anime = load_dataset(str(SHARED_DATA / "anime"))
    domains = anime.domains()
    assert set(domains.tolist()) == {0, 1}
    users_in_both = np.intersect1d(anime.user_idx[domains[anime.item_idx] == 0],
                                   anime.user_idx[domains[anime.item_idx] == 1])
    assert len(users_in_both) > 3000
