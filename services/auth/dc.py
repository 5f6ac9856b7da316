"""What ``help.getConfig`` tells clients about this DC: its id, where its gateway listens, and the limits.

A pure function with no dependencies, so the gateway can use the same answer when it runs alone (its tests, with
no auth service configured) without importing anything of the service's database code.
"""

from __future__ import annotations

from mtproto.tl import api


def config(dc_id: int, host: str, port: int, now: int) -> api.types.Config:
    return api.types.Config(
        date=now, expires=now + 3600, test_mode=True, this_dc=dc_id,
        dc_options=[api.types.DcOption(id=dc_id, ip_address=host, port=port)],
        dc_txt_domain_name="", chat_size_max=200, megagroup_size_max=200000, forwarded_count_max=100,
        online_update_period_ms=210000, offline_blur_timeout_ms=5000, offline_idle_timeout_ms=30000,
        online_cloud_timeout_ms=300000, notify_cloud_delay_ms=30000, notify_default_delay_ms=1500,
        push_chat_period_ms=60000, push_chat_limit=2, edit_time_limit=172800, revoke_time_limit=2147483647,
        revoke_pm_time_limit=2147483647, rating_e_decay=2419200, stickers_recent_limit=200,
        channels_read_media_period=604800, call_receive_timeout_ms=20000, call_ring_timeout_ms=90000,
        call_connect_timeout_ms=30000, call_packet_timeout_ms=10000, me_url_prefix="https://t.me/",
        caption_length_max=1024, message_length_max=4096, webfile_dc_id=dc_id,
    )
