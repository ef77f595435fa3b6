//! What a record found by a strategy gives, the same for an extraction and a probe: its
//! status checked (a post Douyin marks unavailable is an error), the file chosen, the
//! metadata.

use super::*;

impl DouyinExtractor {
    /// What a record found by `strategy` gives: its status checked (a post Douyin marks
    /// unavailable is an error), the file chosen, the metadata; with the Cookie header and
    /// User-Agent the downloader must send. Attempts and timings are left for the caller.
    pub(super) fn finish(
        &self,
        target: &Target,
        strategy: &'static str,
        record: &aweme::Aweme,
        cookie: Option<String>,
        user_agent: Option<String>,
    ) -> Result<Extraction, ExtractError> {
        aweme::check_status(record).map_err(|e| match e {
            ParseError::Unavailable { reason } => ExtractError::Unavailable(reason),
            other => ExtractError::Unavailable(other.to_string()),
        })?;
        let choice = media::choose(record, self.opts.images, self.opts.prefer_h264)?;
        let chosen = match &choice {
            Choice::Video { best, .. } => Some(best),
            Choice::Images { .. } => None,
        };
        let metadata = media::metadata(record, chosen);
        Ok(Extraction {
            aweme_id: target.aweme_id.clone(),
            link_kind: target.kind,
            title: record.desc.clone().filter(|d| !d.trim().is_empty()),
            strategy,
            cover_url: media::cover_url(record),
            cover_urls: media::cover_urls(record),
            choice,
            metadata,
            attempts: Vec::new(),
            resolve_ms: 0,
            total_ms: 0,
            cookie,
            user_agent,
        })
    }
}
