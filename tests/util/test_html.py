"""The static HTML page: links, captions, escaping, paths kept inside its folder."""

from pathlib import Path

import pytest

from util.html import HTMLPage


def test_html_page_links_captions_and_escapes(tmp_path):
    page = HTMLPage(tmp_path / "web", "run <1>", refresh_s=30)
    assert (tmp_path / "web" / "images").is_dir()
    page.add_header("epoch 1 & 2")
    page.add_images(["images/a.png", "images/b c.png"], ["real_A", "fake_B"], width=128)
    page.add_text_block("G_L1: 0.5 <script>alert(1)</script>\nsecond line")
    path = page.save()
    assert path == tmp_path / "web" / "index.html"
    html = path.read_text(encoding="utf-8")
    assert '<a href="images/a.png">' in html
    assert 'src="images/a.png"' in html
    assert 'href="images/b%20c.png"' in html
    assert "width:128px" in html
    assert "<p>real_A</p>" in html
    assert "<p>fake_B</p>" in html
    assert "<title>run &lt;1&gt;</title>" in html
    assert "epoch 1 &amp; 2" in html
    assert 'http-equiv="refresh"' in html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\nsecond line" in html
    assert sorted(p.name for p in (tmp_path / "web").iterdir()) == ["images", "index.html"]


@pytest.mark.parametrize("bad", ["../x.png", "/etc/x.png", "images/../../x.png"])
def test_html_page_refuses_paths_outside_its_folder(tmp_path, bad):
    page = HTMLPage(tmp_path, "t")
    with pytest.raises(ValueError, match="inside"):
        page.add_images([bad], ["x"], width=64)


def test_html_page_needs_one_caption_per_image(tmp_path):
    with pytest.raises(ValueError, match="2 image paths but 1 captions"):
        HTMLPage(tmp_path, "t").add_images(["images/a.png", "images/b.png"], ["a"], width=64)


def test_html_page_without_refresh(tmp_path: Path):
    HTMLPage(tmp_path, "t").save()
    assert "refresh" not in (tmp_path / "index.html").read_text(encoding="utf-8")
