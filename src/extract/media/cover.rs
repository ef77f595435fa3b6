//! The post's cover picture: the one recorded as the row's thumbnail (what Douyin shows
//! first), and the mirrors of the best static cover, which the worker stores beside the video.

use super::super::aweme::{Aweme, Cover};
use super::{clean_urls, prefer_non_webp};

/// The cover picture: `video.cover`, else `video.origin_cover`, else `video.dynamic_cover`,
/// else the first picture of an image post; a non-`.webp` mirror when there is one.
pub fn cover_url(aweme: &Aweme) -> Option<String> {
    let video = aweme.video.as_ref();
    let covers = video
        .into_iter()
        .flat_map(|v| [&v.cover, &v.origin_cover, &v.dynamic_cover]);
    let first_image = aweme.images.iter().flatten().next().map(|i| &i.url_list);
    covers
        .flatten()
        .map(|c: &Cover| &c.url_list)
        .chain(first_image)
        .find_map(|list| prefer_non_webp(clean_urls(list)).into_iter().next())
}

/// The mirrors of the best static cover, best first: `video.origin_cover` (the original size)
/// before `video.cover`, and JPEG or PNG before WebP where both exist; never the animated
/// `dynamic_cover`. Empty when the record has no static cover (an image post's cover is its
/// first picture, stored as the post's own object).
pub fn cover_urls(aweme: &Aweme) -> Vec<String> {
    let Some(video) = aweme.video.as_ref() else {
        return Vec::new();
    };
    let mut urls: Vec<String> = Vec::new();
    for cover in [&video.origin_cover, &video.cover].into_iter().flatten() {
        for url in clean_urls(&cover.url_list) {
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    prefer_non_webp(urls)
}
