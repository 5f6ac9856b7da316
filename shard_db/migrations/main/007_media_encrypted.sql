-- Secret-chat files (services/media/encrypted.py; core.telegram.org/api/end-to-end, "Sending encrypted files"): a
-- stored file of a third kind, 3 (encrypted), whose bytes are the ciphertext the client uploaded. The server never
-- decodes it and has no key; it keeps the 32-bit key_fingerprint the client gave (inputEncryptedFileUploaded) so
-- that every encryptedFile naming the file, sent now or again later with inputEncryptedFile, carries the same one.
-- Never edit this file once applied: add a new one.
ALTER TABLE media_files ADD COLUMN key_fingerprint integer;
ALTER TABLE media_files ADD CONSTRAINT media_files_key_fingerprint CHECK ((kind = 3) = (key_fingerprint IS NOT NULL));
