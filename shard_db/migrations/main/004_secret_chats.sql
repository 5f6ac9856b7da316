-- Ids of secret chats (core.telegram.org/api/end-to-end), unique across all users: each participant keeps a copy
-- of the chat on their own shard under this id (migrations/shard/005_secret_chats.sql), so it must not collide in
-- either box. An int on the wire (encryptedChat.id, inputEncryptedChat.chat_id), hence AS integer.
-- Never edit this file once applied: add a new one.
CREATE SEQUENCE secret_chat_ids AS integer START WITH 1 MAXVALUE 2147483647;
