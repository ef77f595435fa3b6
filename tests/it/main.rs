//! Integration tests: one binary. The stand-ins and server launchers they run against live in
//! the `fakes` crate (`fakes/`): PostgreSQL clusters (`fakes::pg`), the Douyin and CDN
//! stand-ins, the PostgREST and Supabase Storage emulators, and the real object-store servers.
//! `support` holds what several test files share: the queue on every backend, stage stubs.

mod support;

mod admin;
mod api;
mod api_guard;
mod api_range;
mod browser;
mod cli;
mod cloud_stores;
mod covers;
mod db_health;
mod disk;
mod doctor;
mod download;
mod events;
mod example_page;
mod extract;
mod fuzz;
mod http_server;
mod image_posts;
mod media;
mod media_ffprobe;
mod migrations;
mod new_user;
mod pooler;
mod progress;
mod queue;
mod realtime;
mod refused_keys;
mod row_security;
mod rows;
mod s3;
mod secrets;
mod storage;
mod storage_admin;
mod supabase;
mod supabase_uploads;
mod system;
mod worker;
