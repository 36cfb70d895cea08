"""common/: the registry idiom, the ordered parallel map and the image-extension rule."""

import pytest

from common.images import IMAGE_EXTENSIONS, is_image_file
from common.parallel import OrderedPool, ordered_map
from common.registry import Registry


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("mode,workers", [("threads", 1), ("threads", 3), ("processes", 2)])
def test_ordered_map_keeps_input_order(mode, workers):
    items = list(range(300))  # several thread windows and process chunks
    assert list(ordered_map(_square, iter(items), workers, mode, chunksize=7)) == [x * x for x in items]


def test_ordered_pool_is_reusable_and_rejects_unknown_modes():
    with OrderedPool(2, "processes", chunksize=4) as pool:
        assert list(pool.map(_square, range(10))) == [x * x for x in range(10)]
        assert list(pool.map(_square, [7])) == [49]
    with pytest.raises(ValueError, match="threads"):
        OrderedPool(2, "fibers")


def test_registry_builds_from_a_node_and_names_what_it_knows():
    reg = Registry("widget")

    @reg.register("square", aliases=("sq",))
    def make(side: int = 1, scale: int = 1):
        return side * side * scale

    assert reg.build_from_node({"name": "sq", "side": 3}, scale=2) == 18
    assert reg.names() == ["square"] and reg.names(include_aliases=True) == ["sq", "square"]
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("sq")(make)
    with pytest.raises(KeyError, match="unknown widget 'circle'; known widgets: sq, square"):
        reg.build("circle")
    with pytest.raises(KeyError, match="'name'"):
        reg.build_from_node({"side": 2})
    reg.unregister("square")
    assert "sq" not in reg and reg.names() == []


def test_image_extensions_are_case_insensitive(tmp_path):
    for name in ("a.JPG", "b.tiff", "c.webp", "d.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir() if is_image_file(p)) == ["a.JPG", "b.tiff", "c.webp"]
    assert ".png" in IMAGE_EXTENSIONS
