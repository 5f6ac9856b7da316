-- Ids of groups and channels, unique across all shards (users get theirs from the users table). A group or
-- channel then lives on logical shard id % N, like a user. Never edit this file once applied: add a new one.
CREATE SEQUENCE peer_ids START WITH 1000000001;
