-- The auth service's tables in the main database (services/auth, applied by services/common/migrations.py).
-- Never edit this file once applied anywhere: put changes in 002_*.sql.

-- A person with an account.
CREATE TABLE users (
    id          bigint GENERATED ALWAYS AS IDENTITY (START WITH 1000001) PRIMARY KEY,
    -- inputUser carries user_id and access_hash: knowing the hash is what lets a client name this user.
    access_hash bigint NOT NULL,
    first_name  text NOT NULL CHECK (first_name <> '' AND length(first_name) <= 64),
    last_name   text NOT NULL DEFAULT '' CHECK (length(last_name) <= 64),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The phone number a user signs in with: one number per user, one user per number.
CREATE TABLE phones (
    phone      text PRIMARY KEY CHECK (phone ~ '^[0-9]{5,15}$'),   -- digits only: E.164 without the '+'
    user_id    bigint NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every auth key a gateway created with the MTProto handshake, stored before dh_gen_ok is sent: clients use a new
-- key on another connection at once. A key exists long before (and after) anyone signs in with it.
CREATE TABLE auth_keys (
    -- auth_key_id: the low 64 bits of SHA1(auth_key), read as a signed little-endian long (the 8 bytes that
    -- prefix every encrypted message).
    id             bigint PRIMARY KEY,
    auth_key       bytea NOT NULL CHECK (octet_length(auth_key) = 256),
    -- The first server salt (new_nonce XOR server_nonce): valid during the key's first salt period only.
    handshake_salt bigint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,        -- temporary (PFS) keys only; NULL for a permanent key
    -- Set when another session terminated this key's authorization (account.resetAuthorization): the key's
    -- next request gets 401 SESSION_REVOKED instead of AUTH_KEY_UNREGISTERED. Cleared by a new sign-in.
    revoked_at     timestamptz
);
-- Finding temporary keys that have expired, to delete them; permanent keys (NULL) are not in the index at all.
CREATE INDEX auth_keys_expires_at ON auth_keys (expires_at) WHERE expires_at IS NOT NULL;

-- A signed-in device. The user an auth key is signed in as is kept here and nowhere else: the key is signed in
-- exactly while its row exists, so sign-in, log-out and revocation are one INSERT or DELETE and can never leave
-- two copies of "who is this key" disagreeing.
CREATE TABLE authorizations (
    auth_key_id    bigint PRIMARY KEY REFERENCES auth_keys (id) ON DELETE CASCADE,
    user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- What account.getAuthorizations shows and account.resetAuthorization names. 0 means "the current session"
    -- on the wire, so a stored hash is never 0.
    hash           bigint NOT NULL UNIQUE CHECK (hash <> 0),
    -- What the client said in initConnection, and where it connected from.
    api_id         integer NOT NULL DEFAULT 0,
    device_model   text NOT NULL DEFAULT '',
    system_version text NOT NULL DEFAULT '',
    app_version    text NOT NULL DEFAULT '',
    lang_code      text NOT NULL DEFAULT '',
    ip             text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    active_at      timestamptz NOT NULL DEFAULT now()
);
-- account.getAuthorizations lists every device of one user.
CREATE INDEX authorizations_user_id ON authorizations (user_id);

-- What the gateway asks for each key it does not have cached (keys.get): the key and its sign-in state in one row.
CREATE VIEW auth_key_records AS
SELECT k.id, k.auth_key, k.handshake_salt, k.created_at, k.expires_at, k.revoked_at, a.user_id
FROM auth_keys k
LEFT JOIN authorizations a ON a.auth_key_id = k.id;
