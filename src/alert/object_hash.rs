//! A port of the `object-hash` npm package (versions 1.3 – 3.0, default options) for JSON values:
//! Kibana names a suppressed alert's group with `objectHash([terms, ruleUuid, spaceId])`
//! (`kibana.alert.instance.id`), and esdetect must produce the same string to merge with Kibana's alerts.
//!
//! The package hashes (SHA-1, hex) its own serialisation of a value. For the JSON types that is:
//! `Null`, `bool:<b>`, `number:<JS Number#toString>`, `string:<UTF-16 length>:<s>`,
//! `array:<n>:` followed by the elements, and for a plain object `object:<k+3>:` followed by
//! `<key>:<value>,` for the three special keys `prototype`, `__proto__`, `constructor` and then the own
//! keys sorted (UTF-16 order). `__proto__` is `Object.prototype` and `constructor` the `Object` function;
//! the package remembers every object it visited in a context list and writes a visited one again as
//! the string `[CIRCULAR:<position>]`, so the first plain object serialises `Object.prototype` in full and
//! later ones refer back to it. Arrays and objects take a context position when entered.
//!
//! `tests/fixtures/object_hash_vectors.json` holds hashes produced by the real package
//! (`scripts/object-hash-vectors.js` regenerates them); the unit tests below check the port against them.

use serde_json::Value;
use sha1::{Digest, Sha1};

/// `objectHash(value)` with the package's default options.
pub fn object_hash(value: &Value) -> String {
    let mut s = Serializer::default();
    s.value(value);
    hex::encode(Sha1::digest(s.out.as_bytes()))
}

/// The package's serialisation (what is hashed), for diagnostics and tests.
pub fn serialize(value: &Value) -> String {
    let mut s = Serializer::default();
    s.value(value);
    s.out
}

#[derive(Default)]
struct Serializer {
    out: String,
    /// Number of objects visited so far (the package's context list length).
    context: usize,
    /// Context positions of `Object.prototype` and of the `Object` function, once visited.
    object_prototype: Option<usize>,
    object_function: Option<usize>,
}

impl Serializer {
    fn string(&mut self, s: &str) {
        let len = s.encode_utf16().count();
        self.out.push_str(&format!("string:{len}:"));
        self.out.push_str(s);
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.out.push_str("Null"),
            Value::Bool(b) => self.out.push_str(if *b { "bool:true" } else { "bool:false" }),
            Value::Number(n) => {
                self.out.push_str("number:");
                self.out.push_str(&js_number(n));
            }
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.context += 1;
                self.out.push_str(&format!("array:{}:", items.len()));
                for item in items {
                    self.value(item);
                }
            }
            Value::Object(map) => {
                self.context += 1;
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
                self.out.push_str(&format!("object:{}:", keys.len() + 3));
                self.special_keys();
                for k in keys {
                    self.string(k);
                    self.out.push(':');
                    self.value(&map[k]);
                    self.out.push(',');
                }
            }
        }
    }

    /// `prototype` (undefined), `__proto__` (`Object.prototype`), `constructor` (`Object`) of a plain object.
    fn special_keys(&mut self) {
        self.string("prototype");
        self.out.push_str(":Undefined,");
        self.string("__proto__");
        self.out.push(':');
        match self.object_prototype {
            Some(i) => self.string(&format!("[CIRCULAR:{i}]")),
            None => {
                self.object_prototype = Some(self.context);
                self.context += 1;
                // Object.prototype: no own enumerable keys; its own `__proto__` is null.
                self.out.push_str("object:3:");
                self.string("prototype");
                self.out.push_str(":Undefined,");
                self.string("__proto__");
                self.out.push_str(":Null,");
                self.string("constructor");
                self.out.push(':');
                self.object_fn();
                self.out.push(',');
            }
        }
        self.out.push(',');
        self.string("constructor");
        self.out.push(':');
        self.object_fn();
        self.out.push(',');
    }

    /// The native `Object` function: name, then its (empty) own properties, or a back reference.
    fn object_fn(&mut self) {
        self.out.push_str("fn:");
        self.string("[native]");
        self.string("function-name:Object");
        match self.object_function {
            Some(i) => self.string(&format!("[CIRCULAR:{i}]")),
            None => {
                self.object_function = Some(self.context);
                self.context += 1;
                self.out.push_str("object:0:");
            }
        }
    }
}

/// JavaScript's `Number.prototype.toString()` (radix 10) for a JSON number.
pub fn js_number(n: &serde_json::Number) -> String {
    // Integers are exact in a double up to 2^53; larger ones are rounded as JavaScript reads them.
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= (1u64 << 53) {
            return i.to_string();
        }
    }
    if let Some(u) = n.as_u64() {
        if u <= (1u64 << 53) {
            return u.to_string();
        }
    }
    js_f64(n.as_f64().unwrap_or(f64::NAN))
}

/// `Number.prototype.toString()` for a double: the shortest round-trip digits, in fixed notation for
/// decimal exponents in [-7, 21) and exponential (`1e+21`, `1.5e-7`) outside.
pub fn js_f64(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if x == 0.0 {
        return "0".into();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    // Rust's `{:e}` prints the shortest round-trip digits: "d.ddde±x".
    let e = format!("{:e}", x.abs());
    let (mantissa, exp) = e.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp + 1; // position of the decimal point relative to the digits
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e_sign = if n >= 1 { "+" } else { "-" };
        let rest = if k > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        format!("{}{rest}e{e_sign}{}", &digits[..1], (n - 1).abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialisation_refers_back_to_object_prototype_and_object_function() {
        let v = json!([[{"field": "a", "value": ["x", 2]}, {"field": "b", "value": null}], "uuid", "default"]);
        let s = serialize(&v);
        assert!(s.starts_with("array:3:array:2:object:5:string:9:prototype:Undefined,string:9:__proto__:object:3:"), "{s}");
        assert!(s.contains("string:12:[CIRCULAR:3]") && s.contains("string:12:[CIRCULAR:4]"), "{s}");
    }

    #[test]
    fn js_number_formatting() {
        for (x, want) in [(1.0, "1"), (0.1, "0.1"), (1.5e-7, "1.5e-7"), (1e21, "1e+21"), (123456789012.5, "123456789012.5"),
                          (-2.5, "-2.5"), (0.000001, "0.000001"), (1e-7, "1e-7"), (1.2345e22, "1.2345e+22")] {
            assert_eq!(js_f64(x), want, "{x}");
        }
    }

    /// Hashes computed by the npm package itself (see the module doc for how the file is made).
    #[test]
    fn matches_the_npm_package_vectors() {
        let text = include_str!("../../tests/fixtures/object_hash_vectors.json");
        let vectors: Vec<Value> = serde_json::from_str(text).expect("vector file");
        assert!(vectors.len() >= 10);
        for v in &vectors {
            assert_eq!(object_hash(&v["value"]), v["hash"].as_str().unwrap(), "value {}", v["value"]);
        }
    }
}
