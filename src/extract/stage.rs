//! Extraction as the pipeline's first stage: a job's cached direct URL reused while it stays
//! valid, else the link extracted, and the answer turned into the media source the downloader
//! takes.

use super::*;

impl DouyinExtractor {
    /// The direct URL an earlier extraction cached on the video row, if it stays valid for
    /// [`ExtractOptions::cache_margin`]; CDN URLs carry their expiry.
    fn cached_source(&self, job: &StageJob) -> Option<MediaSource> {
        let cached = job.cached.as_ref()?;
        let url = cached.url.as_str();
        let douyin_id = job.douyin_id.clone()?;
        if !media::still_valid(url, chrono::Utc::now(), self.opts.cache_margin) {
            return None;
        }
        let meta = cached.meta.clone().unwrap_or(Value::Null);
        let candidate = &meta["candidate"];
        let mut urls = vec![url.to_string()];
        for mirror in candidate["urls"].as_array().into_iter().flatten() {
            if let Some(m) = mirror.as_str()
                && !urls.iter().any(|u| u == m)
            {
                urls.push(m.to_string());
            }
        }
        Some(MediaSource {
            douyin_id: douyin_id.clone(),
            urls,
            headers: vec![
                ("User-Agent".to_string(), client::IPHONE_UA.to_string()),
                ("Referer".to_string(), "https://www.douyin.com/".to_string()),
            ],
            expected_size: candidate["data_size"].as_u64(),
            strategy: crate::stage::CACHED_STRATEGY.to_string(),
            video: VideoUpdate {
                douyin_id: Some(douyin_id),
                // The Douyin cover the earlier extraction saw (a stored cover records it as
                // the thumbnail it replaced).
                thumbnail_url: meta["metadata"]["cover_url"].as_str().map(str::to_string),
                ..VideoUpdate::default()
            },
            metadata: meta["metadata"].clone(),
            key_suffix: None,
            parts: Vec::new(),
            cover_urls: cached_cover_urls(&meta),
            key_template: None,
        })
    }
}

#[async_trait]
impl crate::stage::Extractor for DouyinExtractor {
    async fn extract(&self, job: &StageJob, _ctx: &JobContext) -> Result<MediaSource, JobError> {
        if let Some(cached) = self.cached_source(job) {
            tracing::info!("using the cached direct URL, still valid");
            return Ok(cached);
        }
        let input = link::job_link(
            job.payload.as_ref(),
            job.link.as_deref(),
            job.douyin_id.as_deref(),
        )
        .ok_or_else(|| {
            JobError::permanent(
                UNSUPPORTED_LINK,
                "unsupported link: the job has no payload link, video_url or douyin_id",
            )
        })?;
        let x = DouyinExtractor::extract(self, &input).await?;
        tracing::info!(strategy = x.strategy, "extraction answered");
        Ok(x.media_source()?)
    }
}

impl Extraction {
    /// What the downloader needs: the best file's mirrors, the headers the CDN expects
    /// (User-Agent, Referer, Douyin's cookies), the announced size, and what to fill in on
    /// the video row. Image posts have no single file: an error.
    pub fn media_source(&self) -> Result<MediaSource, ExtractError> {
        let user_agent = self.user_agent.as_deref().unwrap_or(client::IPHONE_UA);
        let mut headers = vec![
            ("User-Agent".to_string(), user_agent.to_string()),
            ("Referer".to_string(), "https://www.douyin.com/".to_string()),
        ];
        if let Some(cookie) = &self.cookie {
            headers.push(("Cookie".to_string(), cookie.clone()));
        }
        let best = match &self.choice {
            Choice::Video { best, .. } => best,
            Choice::Images { images, music_url } => {
                return self.image_post_source(images, music_url.as_deref(), headers);
            }
        };
        let expires = best.urls.first().and_then(|u| media::url_expiry(u));
        Ok(MediaSource {
            douyin_id: self.aweme_id.clone(),
            urls: best.urls.clone(),
            headers,
            expected_size: best.data_size,
            strategy: self.strategy.to_string(),
            video: VideoUpdate {
                douyin_id: Some(self.aweme_id.clone()),
                title: self.title.clone(),
                thumbnail_url: self.cover_url.clone(),
                video_url_direct: best.urls.first().cloned(),
                video_url_meta: Some(json!({
                    "expires_at": expires,
                    "candidate": best,
                    "strategy": self.strategy,
                    "metadata": self.metadata,
                    "cover_urls": self.cover_urls,
                })),
                stored_thumbnail_url: None,
            },
            metadata: self.metadata.clone(),
            key_suffix: None,
            parts: Vec::new(),
            cover_urls: self.cover_urls.clone(),
            key_template: None,
        })
    }

    /// An image post (stored when `IMAGE_POSTS=store`): the first picture is the main file
    /// (the video row points at it); the other pictures (`_2`, `_3`, ...), the motion of live
    /// photos (`_1_live`, ...) and the soundtrack (`_music`) are parts stored beside it.
    fn image_post_source(
        &self,
        images: &[media::ImageMedia],
        music_url: Option<&str>,
        headers: Vec<(String, String)>,
    ) -> Result<MediaSource, ExtractError> {
        let Some(first) = images.first() else {
            return Err(ExtractError::Choice(ChoiceError::Nothing(
                "an image post without any picture URL".into(),
            )));
        };
        let mut parts = Vec::new();
        for (i, image) in images.iter().enumerate() {
            if i > 0 {
                parts.push(MediaPart {
                    key_suffix: format!("_{}", i + 1),
                    urls: image.urls.clone(),
                    expected_size: None,
                });
            }
            if let Some(live) = &image.live_video {
                parts.push(MediaPart {
                    key_suffix: format!("_{}_live", i + 1),
                    urls: live.urls.clone(),
                    expected_size: live.data_size,
                });
            }
        }
        if let Some(music) = music_url {
            parts.push(MediaPart {
                key_suffix: "_music".into(),
                urls: vec![music.to_string()],
                expected_size: None,
            });
        }
        Ok(MediaSource {
            douyin_id: self.aweme_id.clone(),
            urls: first.urls.clone(),
            headers,
            expected_size: None,
            strategy: self.strategy.to_string(),
            video: VideoUpdate {
                douyin_id: Some(self.aweme_id.clone()),
                title: self.title.clone(),
                thumbnail_url: self.cover_url.clone(),
                // Picture URLs are no video to reuse: nothing is cached for the next attempt.
                video_url_direct: None,
                video_url_meta: Some(json!({
                    "kind": "images",
                    "images": images.len(),
                    "strategy": self.strategy,
                    "metadata": self.metadata,
                })),
                stored_thumbnail_url: None,
            },
            metadata: self.metadata.clone(),
            key_suffix: None,
            parts,
            // The first picture is the post's cover: it is stored as the post's own object.
            cover_urls: Vec::new(),
            key_template: None,
        })
    }
}

/// The cover mirrors an earlier extraction cached with the direct URL (`cover_urls` of
/// `video_url_meta`), else the thumbnail it recorded (`metadata.cover_url`).
fn cached_cover_urls(meta: &Value) -> Vec<String> {
    let listed: Vec<String> = meta["cover_urls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    meta["metadata"]["cover_url"]
        .as_str()
        .map(|u| vec![u.to_string()])
        .unwrap_or_default()
}
