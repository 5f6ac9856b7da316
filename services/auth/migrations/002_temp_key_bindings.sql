-- Perfect forward secrecy (core.telegram.org/api/pfs): temporary auth keys bound to permanent ones with
-- auth.bindTempAuthKey. Applied after 001_auth.sql; never edit either once applied: put changes in 003_*.sql.

-- Which permanent key each temporary key stands for. A bound temporary key acts as its permanent key for
-- everything about sign-in: the authorization (authorizations row) stays on the permanent key, so signing in or
-- logging out through either key changes both, and a new temporary key bound later is signed in at once.
-- The binding lasts as long as the temporary key (auth_keys.expires_at, which binding may shorten); the gateways
-- refuse an expired key, and deleting a key deletes its binding.
CREATE TABLE auth_key_bindings (
    temp_auth_key_id bigint PRIMARY KEY REFERENCES auth_keys (id) ON DELETE CASCADE,
    -- UNIQUE: "each permanent key may only be bound to one temporary key at a time, binding a new temporary key
    -- overwrites the previous one" (core.telegram.org/method/auth.bindTempAuthKey).
    perm_auth_key_id bigint NOT NULL UNIQUE REFERENCES auth_keys (id) ON DELETE CASCADE,
    nonce            bigint NOT NULL,      -- the client's random nonce of the binding message, for the logs
    bound_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (temp_auth_key_id <> perm_auth_key_id)
);

-- The key records the gateways ask for (keys.get), now following a binding: for a bound temporary key, the user
-- and the revocation are the permanent key's. The first seven columns are 001's, unchanged in name and order
-- (CREATE OR REPLACE VIEW may only add columns at the end); perm_auth_key_id is new.
CREATE OR REPLACE VIEW auth_key_records AS
SELECT k.id, k.auth_key, k.handshake_salt, k.created_at, k.expires_at,
       CASE WHEN b.perm_auth_key_id IS NULL THEN k.revoked_at ELSE p.revoked_at END AS revoked_at,
       a.user_id,
       b.perm_auth_key_id
FROM auth_keys k
LEFT JOIN auth_key_bindings b ON b.temp_auth_key_id = k.id
LEFT JOIN auth_keys p ON p.id = b.perm_auth_key_id
LEFT JOIN authorizations a ON a.auth_key_id = coalesce(b.perm_auth_key_id, k.id);
