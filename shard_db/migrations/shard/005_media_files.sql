-- Which stored file (services/media) a message carries, as an indexed column: the media service releases a file
-- once no message carries it any more, and asks the message service (files.inUse, services/messages/media.py),
-- which searches these indexes. A group's own row gains the media its members' copies carry. Never edit once
-- applied.
--
-- file_id is generated from the media column by the database itself, so no writer can forget it or get it wrong
-- (and rows written before this file get theirs when the column is added). Both kinds of MessageMedia the media
-- service makes, messageMediaPhoto#e216eb63 and messageMediaDocument#52d8ccd9, are laid out as: constructor (4
-- bytes), flags (4; flags.0: the photo or document is there), then the photo#fb197a65 or document#8fd4c4d8:
-- its constructor (4), its flags (4), then its id, a little-endian long at byte 16.
CREATE FUNCTION mtlab_media_file_id(media bytea) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(media) >= 24
                     AND substring(media FROM 1 FOR 4) IN ('\x63eb16e2'::bytea, '\xd9ccd852'::bytea)
                     AND get_byte(media, 4) & 1 = 1
           -- (parenthesised: | and << have the same precedence in SQL and bind left to right)
           THEN (get_byte(media, 16)::bigint << 0) | (get_byte(media, 17)::bigint << 8)
                | (get_byte(media, 18)::bigint << 16) | (get_byte(media, 19)::bigint << 24)
                | (get_byte(media, 20)::bigint << 32) | (get_byte(media, 21)::bigint << 40)
                | (get_byte(media, 22)::bigint << 48) | (get_byte(media, 23)::bigint << 56)
           END
$$;

ALTER TABLE chat_messages ADD COLUMN media bytea;        -- MessageMedia as TL, or NULL (as in a member's copy)

ALTER TABLE messages ADD COLUMN file_id bigint GENERATED ALWAYS AS (mtlab_media_file_id(media)) STORED;
ALTER TABLE chat_messages ADD COLUMN file_id bigint GENERATED ALWAYS AS (mtlab_media_file_id(media)) STORED;
ALTER TABLE channel_messages ADD COLUMN file_id bigint GENERATED ALWAYS AS (mtlab_media_file_id(media)) STORED;

CREATE INDEX messages_file ON messages (file_id) WHERE file_id IS NOT NULL;
CREATE INDEX chat_messages_file ON chat_messages (file_id) WHERE file_id IS NOT NULL;
CREATE INDEX channel_messages_file ON channel_messages (file_id) WHERE file_id IS NOT NULL;
