-- The media service's metadata (services/media): uploads being staged, content-addressed blobs, stored files and
-- who may read them. The bytes themselves are files in the blob store (MTLAB_MEDIA_DIR), never rows.
-- Never edit this file once applied: add a new one.

-- An upload in progress: the parts one user sent under one client-chosen file_id (upload.saveFilePart /
-- saveBigFilePart). The part bytes are staged on disk; these rows say which parts arrived, with which size.
CREATE TABLE media_uploads (
    owner_id     bigint  NOT NULL,
    file_id      bigint  NOT NULL,            -- the client's random id (inputFile.id)
    big          boolean NOT NULL,            -- sent with saveBigFilePart
    total_parts  integer,                     -- saveBigFilePart's file_total_parts; NULL for a small file
    part_size    integer,                     -- the size of every part but the last, once a part shows it
    last_part    integer NOT NULL DEFAULT -1, -- the highest part number received so far
    last_size    integer NOT NULL DEFAULT 0,  -- ...and its size
    parts        integer NOT NULL DEFAULT 0,  -- parts staged (counted against the user's parts in flight)
    bytes        bigint  NOT NULL DEFAULT 0,  -- bytes staged (counted against the user's quota)
    assembled_id bigint,                      -- the stored file it became: sending it again reuses that file
    touched_at   double precision NOT NULL,   -- unix time of the last part or use; the sweeper expires from here
    PRIMARY KEY (owner_id, file_id)
);
CREATE INDEX media_uploads_touched ON media_uploads (touched_at);

CREATE TABLE media_upload_parts (
    owner_id  bigint  NOT NULL,
    file_id   bigint  NOT NULL,
    part      integer NOT NULL,
    size      integer NOT NULL,
    token     bigint  NOT NULL,               -- names the staged file <part>.<token>: a resent part never
                                              -- overwrites the bytes another request may be reading
    PRIMARY KEY (owner_id, file_id, part),
    FOREIGN KEY (owner_id, file_id) REFERENCES media_uploads ON DELETE CASCADE
);

-- Content-addressed blobs: one file in the store per distinct content, however many files point at it.
CREATE TABLE media_blobs (
    sha256     bytea   PRIMARY KEY,
    size       bigint  NOT NULL,
    refs       integer NOT NULL CHECK (refs >= 0),  -- media_files and media_photo_sizes rows pointing here
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A stored file as clients see it: a document, or a photo (whose sizes are in media_photo_sizes).
CREATE TABLE media_files (
    id             bigint   PRIMARY KEY,
    access_hash    bigint   NOT NULL,
    file_reference bytea    NOT NULL,
    owner_id       bigint   NOT NULL,           -- the uploader
    kind           smallint NOT NULL,           -- 1 document, 2 photo
    sha256         bytea    NOT NULL REFERENCES media_blobs,
    size           bigint   NOT NULL,
    mime_type      text     NOT NULL,
    name           text     NOT NULL,
    attributes     bytea,                       -- a document's Vector<DocumentAttribute> as TL
    date           integer  NOT NULL
);
CREATE INDEX media_files_owner ON media_files (owner_id);

CREATE TABLE media_photo_sizes (
    file_id bigint  NOT NULL REFERENCES media_files ON DELETE CASCADE,
    type    text    NOT NULL,                   -- Telegram's size letters: s, m, x, y, w
    w       integer NOT NULL,
    h       integer NOT NULL,
    sha256  bytea   NOT NULL REFERENCES media_blobs,
    size    bigint  NOT NULL,
    PRIMARY KEY (file_id, type)
);

-- Who may download a file besides its uploader: the users who were shown a message carrying it.
CREATE TABLE media_readers (
    file_id bigint NOT NULL REFERENCES media_files ON DELETE CASCADE,
    user_id bigint NOT NULL,
    PRIMARY KEY (file_id, user_id)
);
