import pytest

from curation.config import from_mapping
from filters.image_url import ImageUrlFilter

GOOD = [
    "https://example.org/photos/2023/lighthouse.jpg",
    "http://example.org/img/IMG_4471.JPEG",
    "https://cdn.example.org/uploads/harbour-at-dusk.png?w=1200&h=800",
    "https://example.org/media/tower.webp#top",
    "https://pbs.example.com/media/Fq3kd.jpg:large",
    "https://cdn.example.org/images/7f3a9c",  # no extension: kept, checked once decoded
    "  https://example.org/adventure-travel/kayak.jpg  ",  # "ad" is a word, not a prefix
    "https://example.org/downloads/headline-photo.jpg",
    "https://ads.example.org/photos/market.jpg",  # the host is not read
    "https://example.org/wp-content/uploads/sitelogo.jpg",  # not a separate word
]

BAD = [
    ("data:image/png;base64,iVBORw0KGgo=", "image_url_data"),
    ("DATA:image/gif;base64,R0lGODlhAQABAAAAACw=", "image_url_data"),
    ("http://[::1/broken.jpg", "image_url_malformed"),
    ("ftp://example.org/photos/tower.jpg", "image_url_scheme"),
    ("javascript:void(0)", "image_url_scheme"),
    ("/photos/tower.jpg", "image_url_scheme"),
    ("//cdn.example.org/photos/tower.jpg", "image_url_scheme"),
    ("", "image_url_scheme"),
    ("https://example.org/static/logo.svg", "image_url_extension"),
    ("https://example.org/favicon.ico", "image_url_extension"),
    ("https://example.org/anim/loading.gif", "image_url_extension"),
    ("https://example.org/scans/page.TIFF", "image_url_extension"),
    ("https://example.org/image.php?id=12", "image_url_extension"),
    ("https://example.org/static/share-icon.png", "image_url_ban_word"),
    ("https://example.org/img/siteLogo2.png", "image_url_ban_word"),
    ("https://example.org/img/LOGO_header.jpg", "image_url_ban_word"),
    ("https://example.org/themes/buttons/next.png", "image_url_ban_word"),
    ("https://example.org/ad/728x90.jpg", "image_url_ban_word"),
    ("https://example.org/img/ads_top.png", "image_url_ban_word"),
    ("https://example.org/users/42/avatar.jpg?s=64", "image_url_ban_word"),
    ("https://example.org/t/pixel.png", "image_url_ban_word"),
    ("https://example.org/img/spacer.gif", "image_url_extension"),
    ("https://example.org/img/my%20banner.jpg", "image_url_ban_word"),
    ("https://example.org/wp-content/plugins/social/fb.png", "image_url_ban_word"),
]


@pytest.mark.parametrize("url", GOOD)
def test_content_image_urls_pass(url):
    assert ImageUrlFilter().judge(url) == (True, None)


@pytest.mark.parametrize("url, reason", BAD)
def test_decoration_and_unusable_urls_drop_with_their_reason(url, reason):
    assert ImageUrlFilter().judge(url) == (False, reason)


def test_score_names_what_was_found():
    score = ImageUrlFilter().score("HTTPS://example.org/img/Share-Icons.PNG?v=2")
    assert score == {"scheme": "https", "extension": "png", "ban_word": "icon"}


def test_settings_change_the_rules():
    assert ImageUrlFilter(allowed_extensions=("jpg", "gif")).judge("https://example.org/a/loading.gif") == (True, None)
    assert ImageUrlFilter(allow_missing_extension=False).judge("https://cdn.example.org/images/7f3a9c") == (
        False,
        "image_url_extension",
    )
    assert ImageUrlFilter(ban_words=("thumb",)).judge("https://example.org/thumbs/tower.jpg") == (
        False,
        "image_url_ban_word",
    )
    assert ImageUrlFilter(ban_words=()).judge("https://example.org/logo.png") == (True, None)
    assert ImageUrlFilter(allowed_schemes=("https",)).judge("http://example.org/a.jpg") == (False, "image_url_scheme")


def test_settings_load_from_config():
    url_filter = from_mapping(ImageUrlFilter, {"allowed_extensions": ["jpg"], "ban_words": "logo"})
    assert url_filter == ImageUrlFilter(allowed_extensions=("jpg",), ban_words=("logo",))
