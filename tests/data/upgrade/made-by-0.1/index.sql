BEGIN TRANSACTION;
CREATE TABLE admin_sessions (
	id VARCHAR NOT NULL, 
	secret_mark VARCHAR NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE entries (
	id INTEGER NOT NULL, 
	source VARCHAR NOT NULL, 
	"key" VARCHAR NOT NULL, 
	alt_key VARCHAR NOT NULL, 
	uid VARCHAR NOT NULL, 
	path VARCHAR, 
	title TEXT, 
	link TEXT, 
	author VARCHAR, 
	categories TEXT, 
	tags TEXT, 
	headimg TEXT, 
	summary TEXT, 
	body_html TEXT, 
	published VARCHAR(32), 
	updated VARCHAR(32), 
	date VARCHAR(32) NOT NULL, 
	first_seen VARCHAR(32) NOT NULL, 
	last_seen VARCHAR(32) NOT NULL, 
	raw_json TEXT, 
	raw_hash VARCHAR, 
	file_hash VARCHAR, 
	render_key VARCHAR, 
	pruned_at VARCHAR(32), 
	dropped_by TEXT, 
	dropped_at VARCHAR(32), 
	category_path TEXT, 
	PRIMARY KEY (id), 
	UNIQUE (source, "key"), 
	UNIQUE (uid), 
	UNIQUE (path)
);
INSERT INTO "entries" VALUES(1,'news','https://paper.example.com/2024/06/restful-sqs','https://paper.example.com/2024/06/restful-sqs#d8950bd41a22','1496dc6c6fc9e8a95d6f71b4','News/Example-Paper/Front-Page/The-Restful-Web-(Amazon''s-SQS).md','The Restful Web (Amazon''s SQS)','https://paper.example.com/2024/06/restful-sqs','Example Paper','["News", "Example Paper", "Front Page"]','[]','','Queues over HTTP, part one.','<div><p>Queues over HTTP, part one.</p></div>','2024-06-10T08:00:00.000000+00:00',NULL,'2024-06-10T08:00:00.000000+00:00','2026-11-27T08:18:46.589502+00:00','2026-11-27T08:18:46.589502+00:00','{"author":"Ada Lovelace","content_html":"<p>Queues over HTTP, part one.</p>","guid":"https://paper.example.com/2024/06/restful-sqs","images":[],"link":"https://paper.example.com/2024/06/restful-sqs","published":"2024-06-10T08:00:00+00:00","summary_html":"<p>Queues over HTTP, part one.</p>","tags":[],"title":"The Restful Web (Amazon''s SQS)","updated":null}','1e4b7d18a40aba9afd0441953d22534c281f05c1','96edb7af6486d7f5de3ea0e129003b1ee0b825bb','fb6e0546166e8dc5',NULL,NULL,NULL,'NewsExample PaperFront Page');
INSERT INTO "entries" VALUES(2,'news','https://paper.example.com/2024/06/restful-sqs-2','https://paper.example.com/2024/06/restful-sqs-2#cc491e2b1c24','abab8ebe6251bb3475f156f4','News/Example-Paper/Front-Page/The-Restful-Web-Amazon''s-SQS.md','The Restful Web: Amazon''s SQS','https://paper.example.com/2024/06/restful-sqs-2','Example Paper','["News", "Example Paper", "Front Page"]','[]','','Queues over HTTP, part two.','<div><p>Queues over HTTP, part two.</p></div>','2024-06-09T08:00:00.000000+00:00',NULL,'2024-06-09T08:00:00.000000+00:00','2026-11-27T08:18:46.589502+00:00','2026-11-27T08:18:46.589502+00:00','{"author":"grace@example.com (Grace Hopper)","content_html":"<p>Queues over HTTP, part two.</p>","guid":"https://paper.example.com/2024/06/restful-sqs-2","images":[],"link":"https://paper.example.com/2024/06/restful-sqs-2","published":"2024-06-09T08:00:00+00:00","summary_html":"<p>Queues over HTTP, part two.</p>","tags":[],"title":"The Restful Web: Amazon''s SQS","updated":null}','63c744bcbcbc09f0cd0fefeda260c8d6c6992e13','2b16317124de9e2df75ae8055833c200befa2d14','fb6e0546166e8dc5',NULL,NULL,NULL,'NewsExample PaperFront Page');
INSERT INTO "entries" VALUES(3,'news','https://paper.example.com/2024/06/release-notes','https://paper.example.com/2024/06/release-notes#62ae2fcf2af5','6251c8ac05a28f256e9b993b','News/Example-Paper/Front-Page/Release-Notes.md','Release Notes','https://paper.example.com/2024/06/release-notes','Example Paper','["News", "Example Paper", "Front Page"]','[]','','What changed this week.','<div><p>What changed this week.</p></div>','2024-06-08T08:00:00.000000+00:00',NULL,'2024-06-08T08:00:00.000000+00:00','2026-11-27T08:18:46.589502+00:00','2026-11-27T08:18:46.589502+00:00','{"author":"Ada Lovelace","content_html":"<p>What changed this week.</p>","guid":null,"images":[],"link":"https://paper.example.com/2024/06/release-notes","published":"2024-06-08T08:00:00+00:00","summary_html":"<p>What changed this week.</p>","tags":[],"title":"Release Notes","updated":null}','762c37bed2b393b9c1944381dc49fd7b41833a52','4578ee53ee2ff4c062c09d8104c6ea3d5426a111','fb6e0546166e8dc5',NULL,NULL,NULL,'NewsExample PaperFront Page');
INSERT INTO "entries" VALUES(4,'news','https://paper.example.com/2024/06/release-notes-lower','https://paper.example.com/2024/06/release-notes-lower#aadfcd9c574d','2ef7fc74fea91b9a09a9f85a','News/Example-Paper/Front-Page/release-notes.md','release notes','https://paper.example.com/2024/06/release-notes-lower','Example Paper','["News", "Example Paper", "Front Page"]','[]','','What changed last week.','<div><p>What changed last week.</p></div>','2024-06-07T08:00:00.000000+00:00',NULL,'2024-06-07T08:00:00.000000+00:00','2026-11-27T08:18:46.589502+00:00','2026-11-27T08:18:46.589502+00:00','{"author":null,"content_html":"<p>What changed last week.</p>","guid":null,"images":[],"link":"https://paper.example.com/2024/06/release-notes-lower","published":"2024-06-07T08:00:00+00:00","summary_html":"<p>What changed last week.</p>","tags":[],"title":"release notes","updated":null}','0428033adf8c56e8e69e4ca1a3341ea3becacdbf','a2ada7478b4656e1a1270a041fdd15640bcf8af4','fb6e0546166e8dc5',NULL,NULL,NULL,'NewsExample PaperFront Page');
INSERT INTO "entries" VALUES(5,'news','note-1','note-1#953efe8f531a','08fb9f88b88f792f28c85412','News/Example-Paper/Front-Page/untitled.md','',NULL,'Example Paper','["News", "Example Paper", "Front Page"]','[]','','A short note without a title. It says little more.','<div><p>A short note without a title. It says little more.</p></div>','2024-06-06T08:00:00.000000+00:00',NULL,'2024-06-06T08:00:00.000000+00:00','2026-11-27T08:18:46.589502+00:00','2026-11-27T08:18:46.589502+00:00','{"author":null,"content_html":"<p>A short note without a title. It says little more.</p>","guid":"note-1","images":[],"link":null,"published":"2024-06-06T08:00:00+00:00","summary_html":"<p>A short note without a title. It says little more.</p>","tags":[],"title":"","updated":null}','7269d8e7c38150b264631bf3a8ee03068d8cdf73','1522dd19becf56127805991a51cb4e1645690b56','fb6e0546166e8dc5',NULL,NULL,NULL,'NewsExample PaperFront Page');
INSERT INTO "entries" VALUES(6,'news','note-2','note-2#953efe8f531a','63e0c7bcc3e8a26bdcdcfc50','News/Example-Paper/Front-Page/untitled-63e0c7bc.md','',NULL,'Example Paper','["News", "Example Paper", "Front Page"]','[]','','Another note, untitled too.','<div><p>Another note, untitled too.</p></div>','2024-06-05T08:00:00.000000+00:00',NULL,'2024-06-05T08:00:00.000000+00:00','2026-11-27T08:18:46.589502+00:00','2026-11-27T08:18:46.589502+00:00','{"author":null,"content_html":"<p>Another note, untitled too.</p>","guid":"note-2","images":[],"link":null,"published":"2024-06-05T08:00:00+00:00","summary_html":"<p>Another note, untitled too.</p>","tags":[],"title":"","updated":null}','c2dd7045986a2de567319457446f7ee5982e32ef','6c7c151506d7980fad16f0f4bf18f61987f51393','fb6e0546166e8dc5',NULL,NULL,NULL,'NewsExample PaperFront Page');
INSERT INTO "entries" VALUES(7,'blog','urn:uuid:0b4c3f5e-6a1d-4f3b-8e2c-1d9a7b6c5e01','urn:uuid:0b4c3f5e-6a1d-4f3b-8e2c-1d9a7b6c5e01#f0fd61477bad','6affb47c9ed84573305e0a13','Tech/Example-Blog/Posts/Café-au-lait.md','Café au lait','https://blog.example.com/cafe','Example Blog','["Tech", "Example Blog", "Posts"]','[]','','Coffee, with milk.','<div><p>Coffee, with milk.</p></div>',NULL,'2024-06-02T09:00:00.000000+00:00','2024-06-02T09:00:00.000000+00:00','2026-11-27T08:18:46.591083+00:00','2026-11-27T08:18:46.591083+00:00','{"author":"Grace Hopper (ada@example.com)","content_html":"<p>Coffee, with milk.</p>","guid":"urn:uuid:0b4c3f5e-6a1d-4f3b-8e2c-1d9a7b6c5e01","images":[],"link":"https://blog.example.com/cafe","published":null,"summary_html":"","tags":[],"title":"Café au lait","updated":"2024-06-02T09:00:00+00:00"}','d09d9cf1a8ce506bdf4cfdac3484fd7e9c54c273','d81aeb25c71e5c2123cb57da2fd904f53a763330','3ad82975a1cd3310',NULL,NULL,NULL,'TechExample BlogPosts');
INSERT INTO "entries" VALUES(8,'blog','urn:uuid:0b4c3f5e-6a1d-4f3b-8e2c-1d9a7b6c5e02','urn:uuid:0b4c3f5e-6a1d-4f3b-8e2c-1d9a7b6c5e02#d1906f887c5c','e21d6e5ee300fa98c9c595b8','Tech/Example-Blog/Posts/CAFE-AU-LAIT.md','CAFE AU LAIT','https://blog.example.com/cafe-loud','Example Blog','["Tech", "Example Blog", "Posts"]','[]','','The same, louder.','<div><p>The same, louder.</p></div>',NULL,'2024-06-01T09:00:00.000000+00:00','2024-06-01T09:00:00.000000+00:00','2026-11-27T08:18:46.591083+00:00','2026-11-27T08:18:46.591083+00:00','{"author":"Grace Hopper","content_html":"<p>The same, louder.</p>","guid":"urn:uuid:0b4c3f5e-6a1d-4f3b-8e2c-1d9a7b6c5e02","images":[],"link":"https://blog.example.com/cafe-loud","published":null,"summary_html":"","tags":[],"title":"CAFE AU LAIT","updated":"2024-06-01T09:00:00+00:00"}','7238dfb8579827c16f4e57d0bcc0a538c7c34867','12129efb8faeab11d2766505df5e640dea1e7ad6','3ad82975a1cd3310',NULL,NULL,NULL,'TechExample BlogPosts');
INSERT INTO "entries" VALUES(9,'podcast','https://podcast.example.com/1','https://podcast.example.com/1#ab79ef957d84','e0043bce9739172744c431b4','Audio/Example-Podcast/Episodes/Episode-1-Pilot.md','Episode 1: Pilot','https://podcast.example.com/1','Example Podcast','["Audio", "Example Podcast", "Episodes"]','[]','','The first episode.','<div><p>The first episode.</p></div>','2024-06-03T06:00:00.000000+00:00',NULL,'2024-06-03T06:00:00.000000+00:00','2026-11-27T08:18:46.590437+00:00','2026-11-27T08:18:46.590437+00:00','{"author":null,"content_html":"<p>The first episode.</p>","guid":"https://podcast.example.com/1","images":[],"link":"https://podcast.example.com/1","published":"2024-06-03T06:00:00+00:00","summary_html":"<p>The first episode.</p>","tags":[],"title":"Episode 1: Pilot","updated":null}','b4e1ab19e416ae77a27f3b972754e8b2243d36b4','aa3d3bd797fab3636c22cf97d12d423bbe0ed4a9','e65d3fc49859ec39',NULL,NULL,NULL,'AudioExample PodcastEpisodes');
INSERT INTO "entries" VALUES(10,'podcast','https://podcast.example.com/1-rerun','https://podcast.example.com/1-rerun#ddd6df9bf5ae','b7964515353d73862d67cb06','Audio/Example-Podcast/Episodes/Episode-1-Pilot-b7964515.md','Episode 1 - Pilot','https://podcast.example.com/1-rerun','Example Podcast','["Audio", "Example Podcast", "Episodes"]','[]','','The first episode again, remastered.','<div><p>The first episode again, remastered.</p></div>','2024-06-04T06:00:00.000000+00:00',NULL,'2024-06-04T06:00:00.000000+00:00','2026-11-27T08:18:46.590437+00:00','2026-11-27T08:18:46.590437+00:00','{"author":null,"content_html":"<p>The first episode again, remastered.</p>","guid":"https://podcast.example.com/1-rerun","images":[],"link":"https://podcast.example.com/1-rerun","published":"2024-06-04T06:00:00+00:00","summary_html":"<p>The first episode again, remastered.</p>","tags":[],"title":"Episode 1 - Pilot","updated":null}','0e9b1fd8c32982affd84dda6587251df9bb19ed9','bba0858b0a2caba4b694125722290557bff7d122','e65d3fc49859ec39',NULL,NULL,NULL,'AudioExample PodcastEpisodes');
CREATE TABLE meta (
	"key" VARCHAR NOT NULL, 
	value VARCHAR, 
	PRIMARY KEY ("key")
);
INSERT INTO "meta" VALUES('schema_version','3');
INSERT INTO "meta" VALUES('content_version','3');
INSERT INTO "meta" VALUES('polls_total','3');
INSERT INTO "meta" VALUES('poll_errors_total','0');
INSERT INTO "meta" VALUES('polls_not_modified_total','0');
INSERT INTO "meta" VALUES('poll_seconds_total_ms','70');
CREATE TABLE polls (
	id INTEGER NOT NULL, 
	source VARCHAR NOT NULL, 
	started_at VARCHAR(32) NOT NULL, 
	duration FLOAT NOT NULL, 
	new INTEGER NOT NULL, 
	updated INTEGER NOT NULL, 
	unchanged INTEGER NOT NULL, 
	failed INTEGER NOT NULL, 
	dropped INTEGER NOT NULL, 
	error TEXT, 
	warnings TEXT, 
	url TEXT, 
	http_status INTEGER, 
	bytes INTEGER, 
	not_modified BOOLEAN, 
	moved_to TEXT, 
	PRIMARY KEY (id)
);
INSERT INTO "polls" VALUES(1,'news','2026-11-27T08:18:46.589502+00:00',2.03585740000562509521e-02,6,0,0,0,0,NULL,'[]','/tmp/tmp.NSURL1xpU6/feeds/news.rss.xml',200,2167,0,NULL);
INSERT INTO "polls" VALUES(2,'blog','2026-11-27T08:18:46.591083+00:00',2.2354866000000583881e-02,2,0,0,0,0,NULL,'[]','/tmp/tmp.NSURL1xpU6/feeds/blog.atom.xml',200,1281,0,NULL);
INSERT INTO "polls" VALUES(3,'podcast','2026-11-27T08:18:46.590437+00:00',2.74391659999082548893e-02,2,0,0,0,0,NULL,'[]','/tmp/tmp.NSURL1xpU6/feeds/podcast.rss.xml',200,1214,0,NULL);
CREATE TABLE secrets (
	"key" VARCHAR NOT NULL, 
	value VARCHAR NOT NULL, 
	PRIMARY KEY ("key")
);
CREATE TABLE sources (
	name VARCHAR NOT NULL, 
	url VARCHAR NOT NULL, 
	title VARCHAR, 
	last_polled_at VARCHAR(32), 
	last_ok_at VARCHAR(32), 
	last_error TEXT, 
	etag VARCHAR, 
	last_modified VARCHAR, 
	body_hash VARCHAR, 
	status VARCHAR, 
	failures INTEGER DEFAULT '0' NOT NULL, 
	next_poll_at VARCHAR(32), 
	interval FLOAT, 
	moved_to TEXT, 
	reason TEXT, 
	config_hash VARCHAR, 
	last_http_status INTEGER, 
	feed_hint FLOAT, 
	PRIMARY KEY (name)
);
INSERT INTO "sources" VALUES('news','/tmp/tmp.NSURL1xpU6/feeds/news.rss.xml','Example Paper','2026-11-27T08:18:46.589502+00:00','2026-11-27T08:18:46.589502+00:00',NULL,NULL,NULL,'4edcedf0731a70dee2e059e1d3503035aed324cc','ok',0,'2026-11-27T08:46:27.892475+00:00',1800.0,NULL,NULL,'213135f2469dc461',200,NULL);
INSERT INTO "sources" VALUES('blog','/tmp/tmp.NSURL1xpU6/feeds/blog.atom.xml','Example Blog','2026-11-27T08:18:46.591083+00:00','2026-11-27T08:18:46.591083+00:00',NULL,NULL,NULL,'d1abed7ff7d4739ecf1ce4bf75d41e9468deb34a','ok',0,'2026-11-27T08:50:46.214580+00:00',1800.0,NULL,NULL,'1e8382104032de4a',200,NULL);
INSERT INTO "sources" VALUES('podcast','/tmp/tmp.NSURL1xpU6/feeds/podcast.rss.xml','Example Podcast','2026-11-27T08:18:46.590437+00:00','2026-11-27T08:18:46.590437+00:00',NULL,NULL,NULL,'b149b44c36a8f91ba7861ea9f7305977e150053c','ok',0,'2026-11-27T08:47:51.106240+00:00',1800.0,NULL,NULL,'402ae4ff1a72364b',200,NULL);
CREATE INDEX ix_entries_date ON entries (date);
CREATE INDEX ix_entries_category_date ON entries (category_path, date);
CREATE INDEX ix_entries_source_date ON entries (source, date);
CREATE INDEX ix_polls_source ON polls (source);
COMMIT;
