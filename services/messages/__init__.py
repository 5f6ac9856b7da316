"""The message service: private chats, groups, channels, secret-chat relay. Not built yet (issue #4)."""
