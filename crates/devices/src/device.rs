//! Devices and their profiles: every field of the conventions' import record (DOMAIN.md).

use std::str::FromStr;

use entente_model::{DevAddr, DevEui, JoinEui, Position};
use serde::{Deserialize, Serialize};

use entente_frame::AesKey;
pub use entente_frame::{DeviceClass, MacVersion};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UseCase {
    WaterMetering,
    Other,
}

/// "Statut cycle de vie" of the import template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Lifecycle {
    Delivery,
    Maintenance,
    Service,
    Stock,
    None,
}

impl FromStr for Lifecycle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DELIVERY" => Ok(Lifecycle::Delivery),
            "MAINTENANCE" => Ok(Lifecycle::Maintenance),
            "SERVICE" => Ok(Lifecycle::Service),
            "STOCK" => Ok(Lifecycle::Stock),
            "NONE" | "" => Ok(Lifecycle::None),
            other => Err(format!(
                "{other:?} is not one of DELIVERY, MAINTENANCE, SERVICE, STOCK, NONE"
            )),
        }
    }
}

/// "Géolocalisation" of the import template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GeolocationMode {
    None,
    Auto,
    Manual,
    ViaOtherDevice,
}

impl FromStr for GeolocationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "NONE" => Ok(GeolocationMode::None),
            "AUTO" => Ok(GeolocationMode::Auto),
            "MANUAL" => Ok(GeolocationMode::Manual),
            "VIA_OTHER_DEVICE" => Ok(GeolocationMode::ViaOtherDevice),
            other => Err(format!(
                "{other:?} is not one of NONE, AUTO, MANUAL, VIA_OTHER_DEVICE"
            )),
        }
    }
}

/// The radio/MAC profile of a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub mac_version: MacVersion,
    pub class: DeviceClass,
    /// RX1 delay in seconds (1..=15) for data frames.
    pub rx_delay: u8,
    pub rx1_dr_offset: u8,
    pub rx2_dr: u8,
    /// Number of measured quantities (billing counts one unit per five).
    pub measured_quantities: u8,
    pub use_case: UseCase,
    /// Whether the network may steer the data rate (LinkADRReq).
    pub adr: bool,
    /// ABP only: the device was provisioned with the network's extra channels. When false
    /// the network sends them with NewChannelReq until the device accepts them.
    pub channels_provisioned: bool,
    /// Payload decoder from the delivery catalogue (`raw`, `cayenne-lpp`, ...); None: raw.
    pub decoder: Option<String>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            mac_version: MacVersion::V1_0_3,
            class: DeviceClass::A,
            rx_delay: 1,
            rx1_dr_offset: 0,
            rx2_dr: 0,
            measured_quantities: 1,
            use_case: UseCase::Other,
            adr: true,
            channels_provisioned: true,
            decoder: None,
        }
    }
}

/// ABP provisioning: DevAddr and session keys given at manufacture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbpKeys {
    pub dev_addr: DevAddr,
    /// NwkSKey (1.0.x) or FNwkSIntKey (1.1).
    pub nwk_s_key: AesKey,
    /// 1.1 only: SNwkSIntKey and NwkSEncKey.
    pub s_nwk_s_int_key: Option<AesKey>,
    pub nwk_s_enc_key: Option<AesKey>,
    /// Absent when the member keeps its AppSKey (payloads then stay encrypted).
    pub app_s_key: Option<AesKey>,
}

/// A device record as the conventions' import template describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub dev_eui: DevEui,
    pub name: String,
    pub serial: String,
    pub reference: String,
    pub equipment: String,
    pub address: String,
    pub geolocation_mode: GeolocationMode,
    pub position: Option<Position>,
    pub lifecycle: Lifecycle,
    pub group: String,
    pub sub_group: String,
    pub offer: String,
    pub join_eui: Option<JoinEui>,
    /// AppKey (OTAA). Absent when the member keeps it (the node then cannot derive AppSKey).
    pub app_key: Option<AesKey>,
    /// NwkKey, LoRaWAN 1.1 only.
    pub nwk_key: Option<AesKey>,
    pub abp: Option<AbpKeys>,
    /// Simple access (000 art. 2.1): the member keeps its AppSKey; payloads stay encrypted.
    pub member_keeps_app_s_key: bool,
    pub profile: Profile,
}

/// What list endpoints show: no key material.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceSummary {
    pub dev_eui: DevEui,
    pub name: String,
    pub serial: String,
    pub group: String,
    pub sub_group: String,
    pub lifecycle: Lifecycle,
    pub activation: &'static str,
    pub join_eui: Option<JoinEui>,
    pub profile: Profile,
    pub position: Option<Position>,
}

impl Device {
    pub fn summary(&self) -> DeviceSummary {
        DeviceSummary {
            dev_eui: self.dev_eui,
            name: self.name.clone(),
            serial: self.serial.clone(),
            group: self.group.clone(),
            sub_group: self.sub_group.clone(),
            lifecycle: self.lifecycle,
            activation: if self.abp.is_some() { "abp" } else { "otaa" },
            join_eui: self.join_eui,
            profile: self.profile.clone(),
            position: self.position,
        }
    }

    /// Checks the record is usable for its version and activation mode.
    pub fn validate(&self) -> Result<(), String> {
        let p = &self.profile;
        if !(1..=15).contains(&p.rx_delay) {
            return Err(format!("rx_delay {} is outside 1..15 s", p.rx_delay));
        }
        if p.rx1_dr_offset > 5 || p.rx2_dr > 7 {
            return Err("rx1_dr_offset must be 0..5 and rx2_dr 0..7 (EU868)".into());
        }
        if p.measured_quantities == 0 {
            return Err("a device measures at least one quantity".into());
        }
        if let Some(position) = self.position {
            position.validate().map_err(|e| e.to_string())?;
        }
        match &self.abp {
            Some(abp) => {
                if p.mac_version.is_11() && (abp.s_nwk_s_int_key.is_none() || abp.nwk_s_enc_key.is_none()) {
                    return Err("an ABP LoRaWAN 1.1 device needs SNwkSIntKey and NwkSEncKey".into());
                }
                if abp.app_s_key.is_none() && !self.member_keeps_app_s_key {
                    return Err("an ABP device needs its AppSKey unless the member keeps it".into());
                }
            }
            None => {
                if self.join_eui.is_none() {
                    return Err("an OTAA device needs a JoinEUI/AppEUI".into());
                }
                if p.mac_version.is_11() {
                    if self.nwk_key.is_none() {
                        return Err("an OTAA LoRaWAN 1.1 device needs its NwkKey".into());
                    }
                    if self.app_key.is_none() && !self.member_keeps_app_s_key {
                        return Err("an OTAA 1.1 device needs its AppKey unless the member keeps it".into());
                    }
                } else if self.app_key.is_none() {
                    // 1.0.x derives the network session key from the AppKey too.
                    return Err("an OTAA LoRaWAN 1.0.x device needs its AppKey".into());
                }
            }
        }
        Ok(())
    }
}
