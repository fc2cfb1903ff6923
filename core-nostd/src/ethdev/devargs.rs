//! DPDK-style device arguments and the port registry that turns them into ports.
//!
//! `net_null0,size=64,copy=1` names a device instance (`net_null0`) of a driver (`net_null`,
//! the name without its trailing instance digits) and gives it `key=value` arguments. Each
//! driver declares the keys it accepts; anything else is an error that names the bad key and
//! lists the accepted ones.
//!
//! The registry is control plane: it maps driver names to factory closures and hands out port
//! ids. It is generic over the port type `T` it stores (typically an application enum over the
//! drivers it links), so the data path stays statically dispatched.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// Parsed device arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevArgs {
    /// The instance name (`net_null0`), or a PCI address.
    pub name: String,
    /// The driver name (`net_null`).
    pub driver: String,
    /// The `key=value` pairs, in order.
    pub args: Vec<(String, String)>,
}

/// Why device arguments were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DevArgsError {
    /// Nothing given.
    Empty,
    /// An argument without `=`.
    MissingValue {
        /// The argument.
        arg: String,
    },
    /// An empty key (`=x`).
    EmptyKey,
    /// A key given twice.
    Duplicate {
        /// The key.
        key: String,
    },
    /// A key the driver does not know.
    UnknownKey {
        /// The driver.
        driver: String,
        /// The key.
        key: String,
        /// The keys it accepts.
        accepted: &'static [&'static str],
    },
    /// A value the driver cannot use.
    BadValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What is expected.
        expected: &'static str,
    },
    /// A required key is missing.
    Required {
        /// The driver.
        driver: String,
        /// The key.
        key: &'static str,
    },
    /// No driver of that name is registered.
    UnknownDriver {
        /// The name given.
        driver: String,
        /// The registered drivers.
        known: Vec<&'static str>,
    },
    /// An instance of that name exists already.
    DuplicateName {
        /// The name.
        name: String,
    },
    /// The driver failed to create the device.
    Create {
        /// The instance name.
        name: String,
        /// The driver's error, as text.
        reason: String,
    },
}

impl fmt::Display for DevArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DevArgsError::Empty => {
                write!(f, "empty device arguments; expected e.g. net_null0,size=64")
            }
            DevArgsError::MissingValue { arg } => {
                write!(
                    f,
                    "device argument '{arg}' has no value; write it as key=value"
                )
            }
            DevArgsError::EmptyKey => write!(f, "device argument with an empty key"),
            DevArgsError::Duplicate { key } => write!(f, "device argument '{key}' given twice"),
            DevArgsError::UnknownKey {
                driver,
                key,
                accepted,
            } => {
                write!(f, "{driver} does not accept '{key}'; accepted keys: ")?;
                if accepted.is_empty() {
                    write!(f, "none")
                } else {
                    write!(f, "{}", accepted.join(", "))
                }
            }
            DevArgsError::BadValue {
                key,
                value,
                expected,
            } => write!(f, "bad value '{value}' for '{key}': expected {expected}"),
            DevArgsError::Required { driver, key } => {
                write!(f, "{driver} needs '{key}=…'")
            }
            DevArgsError::UnknownDriver { driver, known } => write!(
                f,
                "no driver named '{driver}'; known drivers: {}",
                known.join(", ")
            ),
            DevArgsError::DuplicateName { name } => {
                write!(
                    f,
                    "a device named '{name}' exists already; use another instance number"
                )
            }
            DevArgsError::Create { name, reason } => write!(f, "creating {name} failed: {reason}"),
        }
    }
}

impl core::error::Error for DevArgsError {}

impl DevArgs {
    /// Parses `name[,key=value]*`.
    pub fn parse(s: &str) -> Result<Self, DevArgsError> {
        let mut parts = s.split(',');
        let name = parts.next().unwrap_or("").trim();
        if name.is_empty() {
            return Err(DevArgsError::Empty);
        }
        // A PCI address (`0000:01:00.0`) names itself; a vdev drops its instance number.
        let driver = if name.contains(':') {
            name
        } else {
            match name.trim_end_matches(|c: char| c.is_ascii_digit()) {
                "" => name,
                d => d,
            }
        };
        let mut args: Vec<(String, String)> = Vec::new();
        for p in parts {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| DevArgsError::MissingValue { arg: p.to_string() })?;
            let k = k.trim();
            if k.is_empty() {
                return Err(DevArgsError::EmptyKey);
            }
            if args.iter().any(|(x, _)| x == k) {
                return Err(DevArgsError::Duplicate { key: k.to_string() });
            }
            args.push((k.to_string(), v.trim().to_string()));
        }
        Ok(Self {
            name: name.to_string(),
            driver: driver.to_string(),
            args,
        })
    }

    /// Fails on any key not in `accepted`.
    pub fn check_keys(&self, accepted: &'static [&'static str]) -> Result<(), DevArgsError> {
        for (k, _) in &self.args {
            if !accepted.contains(&k.as_str()) {
                return Err(DevArgsError::UnknownKey {
                    driver: self.driver.clone(),
                    key: k.clone(),
                    accepted,
                });
            }
        }
        Ok(())
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed as a number, or `default` if absent.
    pub fn get_num<N: core::str::FromStr>(
        &self,
        key: &str,
        default: N,
        expected: &'static str,
    ) -> Result<N, DevArgsError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| DevArgsError::BadValue {
                key: key.to_string(),
                value: v.to_string(),
                expected,
            }),
        }
    }

    /// The value of `key` as a 0/1 flag, or `default` if absent.
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool, DevArgsError> {
        match self.get(key) {
            None => Ok(default),
            Some("1") | Some("true") | Some("yes") => Ok(true),
            Some("0") | Some("false") | Some("no") => Ok(false),
            Some(v) => Err(DevArgsError::BadValue {
                key: key.to_string(),
                value: v.to_string(),
                expected: "0 or 1",
            }),
        }
    }

    /// The value of a required key.
    pub fn require(&self, key: &'static str) -> Result<&str, DevArgsError> {
        self.get(key).ok_or_else(|| DevArgsError::Required {
            driver: self.driver.clone(),
            key,
        })
    }
}

/// A driver factory: makes a port of type `T` with the given port id from device arguments.
pub type Factory<T> = Box<dyn Fn(u16, &DevArgs) -> Result<T, DevArgsError> + Send + Sync>;

/// Ports created from device arguments, by id.
pub struct PortRegistry<T> {
    drivers: Vec<(&'static str, Factory<T>)>,
    ports: Vec<(String, T)>,
}

impl<T> Default for PortRegistry<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> PortRegistry<T> {
    /// No drivers, no ports.
    pub fn new() -> Self {
        Self {
            drivers: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// Makes driver `name` (e.g. `net_null`) available.
    pub fn register_driver(&mut self, name: &'static str, factory: Factory<T>) {
        self.drivers.push((name, factory));
    }

    /// Creates a port from device arguments; returns its id.
    pub fn create(&mut self, devargs: &str) -> Result<u16, DevArgsError> {
        let args = DevArgs::parse(devargs)?;
        if self.ports.iter().any(|(n, _)| *n == args.name) {
            return Err(DevArgsError::DuplicateName { name: args.name });
        }
        let (_, factory) = self
            .drivers
            .iter()
            .find(|(n, _)| *n == args.driver)
            .ok_or_else(|| DevArgsError::UnknownDriver {
                driver: args.driver.clone(),
                known: self.drivers.iter().map(|(n, _)| *n).collect(),
            })?;
        let id = self.ports.len() as u16;
        let port = factory(id, &args)?;
        self.ports.push((args.name, port));
        Ok(id)
    }

    /// Number of ports.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether there are no ports.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Port `id`.
    pub fn get(&self, id: u16) -> Option<&T> {
        self.ports.get(id as usize).map(|(_, p)| p)
    }

    /// Port `id`, mutably.
    pub fn get_mut(&mut self, id: u16) -> Option<&mut T> {
        self.ports.get_mut(id as usize).map(|(_, p)| p)
    }

    /// The instance name of port `id`.
    pub fn name(&self, id: u16) -> Option<&str> {
        self.ports.get(id as usize).map(|(n, _)| n.as_str())
    }

    /// All ports, mutably, in id order (to lend different ports to different cores).
    pub fn ports_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.ports.iter_mut().map(|(_, p)| p)
    }

    /// Takes all ports out of the registry, in id order.
    pub fn into_ports(self) -> Vec<T> {
        self.ports.into_iter().map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn parses_name_driver_and_args() {
        let d = DevArgs::parse("net_null0,size=64, copy=1").unwrap();
        assert_eq!(d.name, "net_null0");
        assert_eq!(d.driver, "net_null");
        assert_eq!(d.get("size"), Some("64"));
        assert_eq!(d.get_num::<u16>("size", 0, "a number").unwrap(), 64);
        assert!(d.get_bool("copy", false).unwrap());
        assert_eq!(d.get_num::<u16>("absent", 7, "n").unwrap(), 7);
        assert_eq!(
            DevArgs::parse("0000:01:00.0").unwrap().driver,
            "0000:01:00.0"
        );
    }

    #[test]
    fn malformed_arguments_are_named() {
        assert_eq!(DevArgs::parse(""), Err(DevArgsError::Empty));
        assert_eq!(
            DevArgs::parse("net_null0,size"),
            Err(DevArgsError::MissingValue { arg: "size".into() })
        );
        assert_eq!(DevArgs::parse("net_null0,=3"), Err(DevArgsError::EmptyKey));
        assert_eq!(
            DevArgs::parse("net_null0,a=1,a=2"),
            Err(DevArgsError::Duplicate { key: "a".into() })
        );
        let d = DevArgs::parse("net_null0,sise=64").unwrap();
        let e = d.check_keys(&["size", "copy"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "net_null does not accept 'sise'; accepted keys: size, copy"
        );
        let d = DevArgs::parse("net_null0,size=big,copy=2").unwrap();
        assert!(d
            .get_num::<u16>("size", 0, "a number")
            .unwrap_err()
            .to_string()
            .contains("big"));
        assert!(d.get_bool("copy", false).is_err());
        assert_eq!(
            d.require("iface").unwrap_err().to_string(),
            "net_null needs 'iface=…'"
        );
    }

    #[test]
    fn registry_creates_by_driver_and_refuses_unknown() {
        let mut r: PortRegistry<(u16, String)> = PortRegistry::new();
        r.register_driver(
            "net_null",
            Box::new(|id, a| {
                a.check_keys(&["size"])?;
                Ok((id, a.name.clone()))
            }),
        );
        assert_eq!(r.create("net_null0").unwrap(), 0);
        assert_eq!(r.create("net_null1,size=60").unwrap(), 1);
        assert_eq!(r.get(1), Some(&(1, "net_null1".to_string())));
        assert_eq!(
            r.create("net_null0"),
            Err(DevArgsError::DuplicateName {
                name: "net_null0".into()
            })
        );
        assert_eq!(
            r.create("net_tap0"),
            Err(DevArgsError::UnknownDriver {
                driver: "net_tap".into(),
                known: vec!["net_null"]
            })
        );
        assert!(matches!(
            r.create("net_null2,x=1"),
            Err(DevArgsError::UnknownKey { .. })
        ));
        assert_eq!(r.len(), 2);
    }
}
