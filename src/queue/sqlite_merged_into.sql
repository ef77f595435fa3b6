-- douyin-worker SQLite schema 2: `videos.merged_into`, as in migrations/0006_one_row_per_video.sql.
--
-- A row queued by a short link whose Douyin id turned out to be another row's points at that
-- row (status `merged`); enqueue, the download API's look-up and retry follow the pointer.
-- Applied once (recorded in douyin_worker_migrations with its checksum).
alter table videos add column merged_into text references videos (id) on delete set null;
