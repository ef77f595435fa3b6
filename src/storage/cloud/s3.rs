//! S3 and S3-compatible stores: the bucket of an `s3://` URL, and creating it.

use object_store::aws::{
    AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, AwsCredentialProvider,
};
use reqwest::StatusCode;
use url::Url;

use super::{Cloud, creation_answer, http_client, no_credential, put_signed, truthy};
use crate::storage::{BucketOutcome, BucketSpec, StorageError};

/// The bucket of an `s3://BUCKET` URL, configured from the `AWS_*` variables.
pub fn s3_from_url(url: &Url) -> Result<(AmazonS3, S3Bucket), String> {
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("STORAGE_URL={url}: expected s3://BUCKET"))?;
    s3_from_builder(
        AmazonS3Builder::from_env()
            .with_url(url.as_str())
            .with_bucket_name(bucket),
    )
    .map_err(|e| format!("STORAGE_URL={url}: {e}"))
}

/// A bucket from a configured builder (its bucket name set), with what creating the bucket
/// needs.
pub fn s3_from_builder(builder: AmazonS3Builder) -> Result<(AmazonS3, S3Bucket), String> {
    let value = |key| builder.get_config_value(&key).filter(|v| !v.is_empty());
    let name =
        value(AmazonS3ConfigKey::Bucket).ok_or("S3 settings: no bucket name (s3://BUCKET)")?;
    let region = value(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
    let virtual_hosted =
        value(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| truthy(&v));
    // The bucket's URL as object_store computes it (its own is private): a virtual-hosted
    // endpoint already names the bucket; otherwise the bucket is the first path segment.
    let url = match value(AmazonS3ConfigKey::Endpoint) {
        Some(endpoint) => {
            let mut url =
                Url::parse(&endpoint).map_err(|_| "AWS_ENDPOINT: not a valid URL".to_string())?;
            if !virtual_hosted {
                url.path_segments_mut()
                    .map_err(|_| "AWS_ENDPOINT: not a valid URL".to_string())?
                    .pop_if_empty()
                    .push(&name);
            }
            url
        }
        None => Url::parse(&format!("https://s3.{region}.amazonaws.com/"))
            .and_then(|u| u.join(&name))
            .map_err(|_| format!("AWS_REGION={region}: not a valid region"))?,
    };
    let store = builder.build().map_err(|e| format!("S3 settings: {e}"))?;
    let bucket = S3Bucket {
        name,
        url,
        region,
        credentials: store.credentials().clone(),
        http: http_client()?,
    };
    Ok((store, bucket))
}

/// Creates an S3 bucket (object_store reads and writes objects only).
#[derive(Clone)]
pub struct S3Bucket {
    name: String,
    /// `https://s3.REGION.amazonaws.com/BUCKET`, `http://ENDPOINT/BUCKET`, or a virtual-hosted
    /// endpoint.
    url: Url,
    region: String,
    credentials: AwsCredentialProvider,
    http: reqwest::Client,
}

impl std::fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Bucket")
            .field("url", &self.url.as_str())
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl S3Bucket {
    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the bucket (`PUT`, with the region as its location outside `us-east-1`); one
    /// this account already owns is [`BucketOutcome::Exists`], one another account owns is an
    /// error. The bucket is created private: public reads on S3 take a bucket policy and the
    /// account's Block Public Access turned off, which the worker leaves to the owner (the
    /// download API hands out signed links either way). Size limits and content types have no
    /// bucket-level equivalent on S3.
    pub async fn create(&self, spec: &BucketSpec) -> Result<BucketOutcome, StorageError> {
        let what = format!("creating bucket s3://{}", self.name);
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| no_credential(Cloud::S3, &what, e))?;
        let body = if self.region == "us-east-1" {
            bytes::Bytes::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
            .into()
        };
        let signer = AwsAuthorizer::new(&credential, "s3", &self.region);
        let resp = put_signed(&self.http, &self.url, &[], body, &what, |req| {
            signer.try_authorize(req, None)
        })
        .await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let code = xml_element(&text, "Code").unwrap_or_default();
        let message = xml_element(&text, "Message").unwrap_or_default();
        let outcome = creation_answer(
            Cloud::S3,
            &what,
            status,
            &format!("{code} {message}"),
            status == StatusCode::CONFLICT && code == "BucketAlreadyOwnedByYou",
            false,
        );
        if matches!(outcome, Ok(BucketOutcome::Created)) && spec.public {
            tracing::warn!(
                bucket = %self.name,
                "created the S3 bucket private: public reads need a bucket policy (and Block \
                 Public Access off); the download API hands out signed links"
            );
        }
        outcome
    }
}

/// The text of the first `<name>` element of an S3 error document.
fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_give_their_code_and_message() {
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>BucketAlreadyExists</Code>\
                   <Message>The requested bucket name is not available.</Message></Error>";
        assert_eq!(xml_element(doc, "Code"), Some("BucketAlreadyExists"));
        assert_eq!(
            xml_element(doc, "Message"),
            Some("The requested bucket name is not available.")
        );
        assert_eq!(xml_element(doc, "Resource"), None);
        assert_eq!(xml_element("", "Code"), None);
    }

    #[test]
    fn the_bucket_url_follows_the_endpoint_style() {
        let build = |b: AmazonS3Builder| {
            s3_from_builder(
                b.with_bucket_name("videos")
                    .with_access_key_id("a")
                    .with_secret_access_key("b")
                    .with_allow_http(true),
            )
            .unwrap()
            .1
        };
        let aws = build(AmazonS3Builder::new().with_region("eu-west-3"));
        assert_eq!(
            aws.url.as_str(),
            "https://s3.eu-west-3.amazonaws.com/videos"
        );
        assert_eq!(aws.region, "eu-west-3");
        let path = build(AmazonS3Builder::new().with_endpoint("http://127.0.0.1:9000"));
        assert_eq!(path.url.as_str(), "http://127.0.0.1:9000/videos");
        assert_eq!(path.region, "us-east-1");
        let hosted = build(
            AmazonS3Builder::new()
                .with_endpoint("https://videos.s3.example.com")
                .with_virtual_hosted_style_request(true),
        );
        assert_eq!(hosted.url.as_str(), "https://videos.s3.example.com/");
    }
}
