-- Which stored files (services/media) each secret chat carried: what keeps a secret-chat file alive. Encrypted
-- messages are not rows of the message tables (they wait in a device's qts_queue, and leave it once acknowledged),
-- so the media service's release (files.inUse, services/messages/media.py) asks this table too.
--
-- The rule: a file is carried while a live (not discarded) copy of a chat that carried it has its row here. A row is
-- written on the shard of the copy the change touches, in the same transaction, with that copy locked: the
-- recipient's copy for messages.sendEncryptedFile (next to the queued message), the caller's own copy for
-- messages.uploadEncryptedFile. Discarding a copy (either side's discardEncryption, or the outbox applying the
-- other side's) deletes its rows in the transaction that discards it; the file is then released by a later sweep
-- unless another live chat carries it. Never edit once applied.
CREATE TABLE secret_files (
    shard    smallint NOT NULL,
    owner_id bigint NOT NULL,                     -- whose copy of the chat (secret_chats.owner_id)
    chat_id  integer NOT NULL,
    file_id  bigint NOT NULL,                     -- the media service's file (media_files.id)
    date     integer NOT NULL,                    -- when the chat first carried it
    PRIMARY KEY (shard, owner_id, chat_id, file_id)
);
CREATE INDEX secret_files_file ON secret_files (file_id);
