-- Public usernames (account.updateUsername, contacts.resolveUsername): at most one per user, unique without
-- regard to case, as on Telegram ("@Alice" and "@alice" are the same name). Never edit once applied: add 004.
ALTER TABLE users ADD COLUMN username text
    -- 5 to 32 characters: a letter first, then letters, digits and single underscores, no underscore at the end.
    CHECK (username ~ '^[A-Za-z][A-Za-z0-9_]{4,31}$' AND username !~ '__' AND right(username, 1) <> '_');
CREATE UNIQUE INDEX users_username ON users (lower(username)) WHERE username IS NOT NULL;
