#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/corpus/<target>/): a handful of small valid
inputs per target, from which libFuzzer mutates. Run again after editing; it rewrites
only the files named here (crash reproducers committed beside them stay).

The targets that read the crates' own encodings (roaming and sync messages, signed
documents, exports, rosters, agreements, device imports) get theirs from the crates' own
encoders: `cargo run --manifest-path fuzz/seedgen/Cargo.toml`."""

import base64
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
GATEWAY_EUI = bytes.fromhex("0080000000000001")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- PHYPayloads (TS001 §4) -------------------------------------------------------

def data_frame(mhdr, dev_addr, fctrl, fcnt, fopts=b"", fport=None, payload=b"", mic=b"\x8f\x1c\x3a\x5e"):
    assert len(fopts) <= 15
    b = bytes([mhdr]) + struct.pack("<I", dev_addr) + bytes([(fctrl & 0xF0) | len(fopts)])
    b += struct.pack("<H", fcnt & 0xFFFF) + fopts
    if fport is not None:
        b += bytes([fport]) + payload
    return b + mic


def join_request(join_eui, dev_eui, dev_nonce, mic=b"\x1d\x3b\x0e\xa9"):
    return b"\x00" + join_eui[::-1] + dev_eui[::-1] + struct.pack("<H", dev_nonce) + mic


JOIN = join_request(bytes.fromhex("70b3d57ed0000001"), bytes.fromhex("0004a30b001c0530"), 0x0102)
# Confirmed data up, ADR set, FOpts: LinkCheckReq, DevStatusAns(battery 200, margin 5),
# LinkAdrAns(all ack); FPort 10 with a 4-byte (encrypted) payload.
DATA_FOPTS = data_frame(0x80, 0x26011BDA, 0x80, 42, bytes([0x02, 0x06, 200, 5, 0x03, 0x07]), 10, bytes.fromhex("a1b2c3d4"))
# Unconfirmed data up: FPort 0, the MAC commands in the (encrypted) payload.
DATA_PORT0 = data_frame(0x40, 0x26011BDB, 0x00, 7, b"", 0, bytes([0x0D, 0x02]))
# Unconfirmed data up, ACK bit, no FPort (an empty uplink acknowledging a downlink).
DATA_EMPTY = data_frame(0x40, 0x26011BDC, 0x20, 65535)
# Unconfirmed data down with FOpts: LinkCheckAns, DevStatusReq.
DOWN_FOPTS = data_frame(0x60, 0x26011BDA, 0xA0, 3, bytes([0x02, 12, 3, 0x06]), 1, b"\x55")

write("phy_payload", "join_request", JOIN)
write("phy_payload", "data_up_fopts", DATA_FOPTS)
write("phy_payload", "data_up_fport0", DATA_PORT0)
write("phy_payload", "data_up_empty_ack", DATA_EMPTY)
write("phy_payload", "data_down_fopts", DOWN_FOPTS)

# --- MAC commands (TS001 §5) ------------------------------------------------------

write("mac_commands", "up_link_check_req", bytes([0x02]))
write("mac_commands", "up_answers", bytes([0x03, 0x07, 0x05, 0x07, 0x06, 254, 0x3F, 0x07, 0x03]))
write("mac_commands", "up_device_time_reset_rekey", bytes([0x0D, 0x01, 0x01, 0x0B, 0x01, 0x08, 0x09, 0x0C]))
write("mac_commands", "up_unknown_after_one", bytes([0x02, 0x99, 0x01]))
# LinkAdrReq(DR5, power 1, channels 0-2, NbTrans 1), DevStatusReq, RxTimingSetupReq(1 s).
write("mac_commands", "down_link_adr", bytes([0x03, 0x51, 0x07, 0x00, 0x01, 0x06, 0x08, 0x01]))
# RxParamSetupReq(RX1 offset 1, RX2 DR3, 869.525 MHz), NewChannelReq(3, 867.1 MHz, DR0-5).
rx2 = struct.pack("<I", 869_525_000 // 100)[:3]
ch3 = struct.pack("<I", 867_100_000 // 100)[:3]
write("mac_commands", "down_channels", bytes([0x05, 0x13]) + rx2 + bytes([0x07, 0x03]) + ch3 + bytes([0x50]))
# LinkCheckAns(margin 12, 3 gateways), DeviceTimeAns, ResetConf, RekeyConf.
write("mac_commands", "down_answers", bytes([0x02, 12, 3, 0x0D]) + struct.pack("<I", 1_400_000_000) + bytes([128, 0x01, 0x01, 0x0B, 0x01]))

# --- GWMP datagrams (PROTOCOL.TXT of the packet forwarder) ------------------------


def up(version, token, ident, body=b""):
    return bytes([version]) + token + bytes([ident]) + GATEWAY_EUI + body


def down(version, token, ident, body=b""):
    return bytes([version]) + token + bytes([ident]) + body


def body(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def rxpk(phy, **over):
    pk = {
        "time": "2026-12-02T08:59:28.123456Z", "tmst": 3512348611, "chan": 2, "rfch": 0,
        "freq": 868.1, "stat": 1, "modu": "LORA", "datr": "SF7BW125", "codr": "4/5",
        "rssi": -57, "lsnr": 7.5, "size": len(phy), "data": base64.b64encode(phy).decode(),
    }
    pk.update(over)
    return {k: v for k, v in pk.items() if v is not None}


STAT = {"time": "2026-12-02 08:59:28 GMT", "lati": 47.39436, "long": 0.68484, "alti": 62,
        "rxnb": 12, "rxok": 11, "rxfw": 11, "ackr": 100.0, "dwnb": 2, "txnb": 2}

write("gwmp_datagram", "push_data_rxpk", up(2, b"\x3a\x41", 0x00, body({"rxpk": [rxpk(DATA_FOPTS)]})))
write("gwmp_datagram", "push_data_join_unpadded", up(2, b"\x3a\x42", 0x00, body({"rxpk": [
    rxpk(JOIN, datr="SF12BW125", tmms=1417000000123, data=base64.b64encode(JOIN).decode().rstrip("="))]})))
write("gwmp_datagram", "push_data_stat", up(2, b"\x3a\x43", 0x00, body({"stat": STAT})))
write("gwmp_datagram", "push_data_two_rxpk_stat_v1", up(1, b"\x3a\x44", 0x00, body({
    "rxpk": [
        rxpk(DATA_PORT0, rssi=None, lsnr=None, rsig=[{"ant": 0, "chan": 2, "rssic": -90, "lsnr": -3.0},
                                                     {"ant": 1, "chan": 2, "rssic": -70, "lsnr": 4.5}]),
        rxpk(DATA_EMPTY, modu="FSK", datr=50000, codr=None, lsnr=None, freq=868.8),
    ],
    "stat": STAT,
})))
write("gwmp_datagram", "pull_data", up(2, b"\x7b\x01", 0x02))
write("gwmp_datagram", "tx_ack_none", up(2, b"\x7b\x02", 0x05, body({"txpk_ack": {"error": "NONE"}})))
write("gwmp_datagram", "tx_ack_too_late", up(2, b"\x7b\x03", 0x05, body({"txpk_ack": {"error": "TOO_LATE"}})))
write("gwmp_datagram", "tx_ack_empty_v1", up(1, b"\x7b\x04", 0x05))
write("gwmp_datagram", "push_ack", down(2, b"\x3a\x41", 0x01))
write("gwmp_datagram", "pull_resp", down(2, b"\x00\x00", 0x03, body({"txpk": {
    "imme": False, "tmst": 3513348611, "freq": 868.1, "rfch": 0, "powe": 14, "modu": "LORA",
    "datr": "SF7BW125", "codr": "4/5", "ipol": True, "size": len(DOWN_FOPTS),
    "data": base64.b64encode(DOWN_FOPTS).decode(), "ncrc": True}})))

# --- node.toml (node/src/init.rs, node/src/config.rs) -------------------------------
# The template `entente init` writes, read from init.rs so the seeds follow it; then
# every default written out (the template uncommented, as the config tests do), the
# federated form the demo and the tests write (`init::federate`), and edge forms.

def init_template(member, name, gw, api):
    src = open(os.path.join(os.path.dirname(ROOT), "..", "node", "src", "init.rs"), encoding="utf-8").read()
    body = src.split("fn template(", 1)[1].split('r#"', 1)[1].split('"#,', 1)[0]
    quoted = lambda s: json.dumps(s, ensure_ascii=False)
    values = {"member": quoted(member), "name": quoted(name), "gw": str(gw), "api": str(api)}
    out, i = [], 0
    while i < len(body):
        two = body[i:i + 2]
        if two in ("{{", "}}"):
            out.append(two[0])
            i += 2
        elif body[i] == "{":
            end = body.index("}", i)
            out.append(values[body[i + 1:end]])
            i = end + 1
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def uncommented(text):
    lines = []
    for line in text.split("\n"):
        kv = line[2:] if line.startswith("# ") else None
        if kv is not None and " = " in kv and all(c.islower() or c == "_" for c in kv.split(" = ", 1)[0]):
            line = kv
        lines.append(line)
    return "\n".join(lines)


def federate(text, block, roster, listen):
    return (text.replace('# dev_addr_block = "26000000/7"', f'dev_addr_block = "{block}"')
            .replace('# roster = "roster.toml"', f'roster = "{roster}"')
            .replace('# listen = ["/ip4/0.0.0.0/tcp/4001"]', f'listen = ["{listen}"]'))


TEMPLATE = init_template("smo-vdln", "SMO", 1700, 8080)
MINIMAL = '[node]\nmember = "tours-metropole"\nname = "Tours"\n'
write("node_toml", "init_template.toml", TEMPLATE.encode())
write("node_toml", "init_template_uncommented.toml", uncommented(TEMPLATE).encode())
write("node_toml", "init_federated.toml",
      federate(TEMPLATE, "26012000/20", "/etc/entente/roster.toml", "/ip4/127.0.0.1/tcp/4101").encode())
write("node_toml", "minimal.toml", MINIMAL.encode())
write("node_toml", "node_name_quoted_unicode.toml",
      init_template("tours-metropole", 'SMO "Val de Loire" Numérique', 1701, 8081).encode())
write("node_toml", "api_tls_test_clock_log_directives.toml", (
    '[node]\nmember = "agglopolys"\nname = "Agglopolys"\ntest_clock = true\npolicies = "../policies"\n'
    'roster = "../federation/val-de-loire/roster.toml"\n'
    '[api]\nbind = "[::1]:8443"\ntls_cert = "api.crt"\ntls_key = "api.key"\nheader_read_timeout = "1s"\n'
    'request_timeout = "1h"\n'
    '[log]\nlevel = "warn,entente_lns[uplink]=trace,entente_gateway=debug"\n').encode())
write("node_toml", "every_section_at_its_bounds.toml", (
    MINIMAL
    + '[gateway]\nbind = "[::]:65535"\nmax_datagram_bytes = 65507\nframe_queue = 16777216\n'
    'recv_buffer_bytes = 2147483647\nonline_window = "1day"\nstatus_flush = "1s"\n'
    '[lns]\nnet_id = "FFFFFF"\ndev_addr_block = "FE000000/32"\ndedup_window = "5s"\n'
    'visited_dedup_window = "1ms"\nadr = false\ndev_status_interval = "1s"\ntx_ack_timeout = "10s"\n'
    'uplink_retention = "2196days"\n'
    '[federation]\nlisten = ["/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001", "/dns4/node.example.fr/tcp/4001"]\n'
    'peer_rate_per_sec = 1\npeer_burst = 4294967295\nbuffer_max = 0\nbuffer_retention = "2days"\n'
    'request_timeout = "10ms"\ntx_margin = "0s"\n'
    '[delivery]\nretention = "2200days"\nbackoff_base = "1ms"\nbackoff_max = "1day"\nhttp_timeout = "10m"\n'
    'tick = "1ms"\npush_urls = ["https://connector.example.fr/entente", "http://127.0.0.1:9000/"]\n'
    'push_directories = ["/srv/entente/exports", "exports"]\n').encode())
write("node_toml", "renamed_keys_of_earlier_files.toml", (
    MINIMAL
    + '[lns]\ndedup_window_ms = 200\ndev_status_interval_hours = 24\n'
    '[federation]\nroster = "roster.toml"\nvisited_dedup_window_ms = 50\n'
    '[gateway]\nonline_window_secs = 90\n[delivery]\nretention_hours = 48\n').encode())
write("node_toml", "dotted_keys_inline_tables.toml", (
    'node = { member = "smo-vdln", name = "SMO" }\n'
    'gateway.bind = "0.0.0.0:1700"\n'
    'lns = { dedup_window = "150ms", dev_addr_block = "26011000/20" }\n'
    '[delivery]\nbackoff_base = "10m"\n').encode())
