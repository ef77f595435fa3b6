//! Integration tests: one binary. PostgreSQL comes from `helpers` (a throwaway cluster);
//! SQLite from temp files.

mod admin;
mod api;
mod api_guard;
mod backends;
mod browser;
mod cdn;
mod cli;
mod cloud_stores;
mod douyin_server;
mod download;
mod extract;
mod helpers;
mod image_posts;
mod media;
mod migrations;
mod postgrest;
mod queue;
mod s3;
mod stages;
mod storage;
mod storage_admin;
mod storage_api;
mod supabase;
mod system;
mod worker;
