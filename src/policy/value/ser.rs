//! A serde `Serializer` whose output is a regorus `Value`: the proxy's input structs go
//! straight to the value the policy reads, with no `serde_json::Value` tree in between.
//!
//! The shape is serde_json's, case for case (`to_rego(serde_json::to_value(x))` and
//! `to_value(x)` are equal; the tests check it on real inputs): `None` and unit are `null`,
//! non-finite floats are `null`, enums are externally tagged, map keys must be strings
//! (boolean and integer keys become their text, as serde_json writes them; float keys
//! are refused), and nesting deeper
//! than `MAX_DEPTH` is an error.

use std::collections::BTreeMap;
use std::fmt;

use regorus::Value;
use serde::ser::{self, Serialize};

use super::MAX_DEPTH;

/// Why a value could not be built (becomes a fail-closed `policy_error`).
#[derive(Debug)]
pub struct SerError(String);

impl fmt::Display for SerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SerError {}

impl ser::Error for SerError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerError(msg.to_string())
    }
}

/// Serializes `v` into a regorus value.
pub fn to_value<T: Serialize + ?Sized>(v: &T) -> Result<Value, String> {
    v.serialize(ValueSerializer { depth: 0 })
        .map_err(|e| e.to_string())
}

/// Serializes one value at nesting `depth`.
#[derive(Clone, Copy)]
struct ValueSerializer {
    depth: usize,
}

impl ValueSerializer {
    /// The serializer for the members of a container at this depth.
    fn nested(self) -> ValueSerializer {
        ValueSerializer {
            depth: self.depth + 1,
        }
    }

    /// Serializes `v` here, refusing to go deeper than `MAX_DEPTH` (as `to_rego` counts).
    fn member<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, SerError> {
        if self.depth > MAX_DEPTH {
            return Err(SerError(format!(
                "input nested deeper than {MAX_DEPTH} levels"
            )));
        }
        v.serialize(self)
    }
}

fn tagged(variant: &'static str, inner: Value) -> Value {
    let mut m = BTreeMap::new();
    m.insert(Value::from(variant), inner);
    Value::from(m)
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = SerError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, SerError> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, SerError> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, SerError> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, SerError> {
        Ok(Value::from(u64::from(v)))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, SerError> {
        Ok(Value::from(u64::from(v)))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, SerError> {
        Ok(Value::from(u64::from(v)))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, SerError> {
        Ok(Value::from(f64::from(v)))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, SerError> {
        Ok(Value::from(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, SerError> {
        Ok(Value::from(
            v.iter()
                .map(|b| Value::from(u64::from(*b)))
                .collect::<Vec<_>>(),
        ))
    }
    fn serialize_none(self) -> Result<Value, SerError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, SerError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, SerError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, SerError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, SerError> {
        Ok(Value::from(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Value, SerError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, SerError> {
        Ok(tagged(variant, self.nested().member(v)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, SerError> {
        Ok(SeqBuilder {
            inner: self.nested(),
            // A length hint from the data is capped: it only sizes the first allocation.
            items: Vec::with_capacity(len.unwrap_or(0).min(64)),
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, SerError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqBuilder, SerError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, SerError> {
        let mut seq = self.nested().serialize_seq(Some(len))?;
        seq.variant = Some(variant);
        Ok(seq)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapBuilder, SerError> {
        Ok(MapBuilder {
            inner: self.nested(),
            fields: BTreeMap::new(),
            key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<MapBuilder, SerError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapBuilder, SerError> {
        let mut map = self.nested().serialize_map(Some(len))?;
        map.variant = Some(variant);
        Ok(map)
    }
}

/// An array (or a tuple variant's array) being built.
pub struct SeqBuilder {
    inner: ValueSerializer,
    items: Vec<Value>,
    variant: Option<&'static str>,
}

impl SeqBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerError> {
        self.items.push(self.inner.member(v)?);
        Ok(())
    }
    fn finish(self) -> Value {
        let v = Value::from(self.items);
        match self.variant {
            Some(variant) => tagged(variant, v),
            None => v,
        }
    }
}

/// Every sequence form (array, tuple, tuple struct, tuple variant) pushes its members the
/// same way.
macro_rules! seq_forms {
    ($($form:ident: $method:ident),* $(,)?) => {
        $(impl ser::$form for SeqBuilder {
            type Ok = Value;
            type Error = SerError;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerError> {
                self.push(v)
            }
            fn end(self) -> Result<Value, SerError> {
                Ok(self.finish())
            }
        })*
    };
}

seq_forms!(
    SerializeSeq: serialize_element,
    SerializeTuple: serialize_element,
    SerializeTupleStruct: serialize_field,
    SerializeTupleVariant: serialize_field,
);

/// An object (a map, a struct or a struct variant's object) being built.
pub struct MapBuilder {
    inner: ValueSerializer,
    fields: BTreeMap<Value, Value>,
    key: Option<Value>,
    variant: Option<&'static str>,
}

impl MapBuilder {
    fn finish(self) -> Value {
        let v = Value::from(self.fields);
        match self.variant {
            Some(variant) => tagged(variant, v),
            None => v,
        }
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = SerError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), SerError> {
        self.key = Some(k.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| SerError("a map value came without its key".into()))?;
        // As serde_json's maps: a repeated key keeps the last value.
        self.fields.insert(key, self.inner.member(v)?);
        Ok(())
    }
    fn end(self) -> Result<Value, SerError> {
        Ok(self.finish())
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Value;
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), SerError> {
        self.fields.insert(Value::from(name), self.inner.member(v)?);
        Ok(())
    }
    fn end(self) -> Result<Value, SerError> {
        Ok(self.finish())
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Value;
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), SerError> {
        ser::SerializeStruct::serialize_field(self, name, v)
    }
    fn end(self) -> Result<Value, SerError> {
        Ok(self.finish())
    }
}

/// Map keys: strings, and booleans and integers as their text (serde_json's rule); anything
/// else is an error (serde_json also writes finite float keys; no input has one).
struct KeySerializer;

/// An integer key is its decimal text.
macro_rules! integer_keys {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<Value, SerError> {
            Ok(Value::from(v.to_string()))
        })*
    };
}

fn key_error() -> SerError {
    SerError("an object key must be a string".into())
}

impl ser::Serializer for KeySerializer {
    type Ok = Value;
    type Error = SerError;
    type SerializeSeq = ser::Impossible<Value, SerError>;
    type SerializeTuple = ser::Impossible<Value, SerError>;
    type SerializeTupleStruct = ser::Impossible<Value, SerError>;
    type SerializeTupleVariant = ser::Impossible<Value, SerError>;
    type SerializeMap = ser::Impossible<Value, SerError>;
    type SerializeStruct = ser::Impossible<Value, SerError>;
    type SerializeStructVariant = ser::Impossible<Value, SerError>;

    fn serialize_str(self, v: &str) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, SerError> {
        Ok(Value::from(v.to_string()))
    }
    fn serialize_bool(self, v: bool) -> Result<Value, SerError> {
        Ok(Value::from(if v { "true" } else { "false" }))
    }
    integer_keys!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_u128: u128,
    );
    fn serialize_f32(self, _: f32) -> Result<Value, SerError> {
        Err(key_error())
    }
    fn serialize_f64(self, _: f64) -> Result<Value, SerError> {
        Err(key_error())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Value, SerError> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<Value, SerError> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Value, SerError> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<Value, SerError> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, SerError> {
        Err(key_error())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, SerError> {
        Ok(Value::from(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Value, SerError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Value, SerError> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, SerError> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, SerError> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, SerError> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, SerError> {
        Err(key_error())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, SerError> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        Err(key_error())
    }
}
