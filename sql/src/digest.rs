//! A mergeable latency sketch for approximate percentiles across agents.
//!
//! `approx_percentile_cont(x, q)` cannot be computed from per-agent percentiles. Instead each
//! agent computes `kindling_digest(x)`: the t-digest of its values (the same sketch, size and
//! update order as DataFusion's own `approx_percentile_cont`), serialized to bytes; the
//! coordinator merges the agents' digests with `kindling_digest_quantile(digest, q)`. The bytes
//! sent grow with the number of groups, at most [`MAX_CENTROIDS`] centroids each, not with the
//! number of rows.
//!
//! Encoding (little endian): `max_size: u64, sum: f64, count: f64, max: f64, min: f64`, then
//! `(mean: f64, weight: f64)` per centroid in ascending mean. A digest from the network is
//! validated before use; a bad one is an error, never a panic.

use std::sync::Arc;

use datafusion::{
    arrow::{
        array::{Array, ArrayRef, AsArray},
        compute::{cast, filter, is_not_null, sort},
        datatypes::{DataType, Field, FieldRef, Float64Type},
    },
    common::{Result, ScalarValue, exec_err, plan_err},
    logical_expr::{
        Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
        function::{AccumulatorArgs, StateFieldsArgs},
    },
};
use datafusion_functions_aggregate_common::tdigest::{Centroid, DEFAULT_MAX_SIZE, TDigest};

/// Name of the agents' function.
pub const DIGEST: &str = "kindling_digest";
/// Name of the coordinator's function.
pub const QUANTILE: &str = "kindling_digest_quantile";
/// Most centroids a digest may carry (DataFusion compresses to 100).
pub const MAX_CENTROIDS: usize = 4 * DEFAULT_MAX_SIZE;

/// `kindling_digest(x)`: the t-digest of the non-null values of `x` as bytes.
pub fn digest_udaf() -> AggregateUDF {
    AggregateUDF::from(DigestUdaf {
        signature: Signature::numeric(1, Volatility::Immutable),
    })
}

/// `kindling_digest_quantile(digest, q)`: the `q` quantile of the merged digests (Float64;
/// NULL when they hold no value).
pub fn quantile_udaf() -> AggregateUDF {
    AggregateUDF::from(QuantileUdaf {
        signature: Signature::exact(
            vec![DataType::Binary, DataType::Float64],
            Volatility::Immutable,
        ),
    })
}

/// Serializes `d`.
pub fn encode(d: &TDigest) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + 16 * d.centroids().len());
    out.extend_from_slice(&(d.max_size() as u64).to_le_bytes());
    for v in [d.sum(), d.count(), d.max(), d.min()] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for c in d.centroids() {
        out.extend_from_slice(&c.mean().to_le_bytes());
        out.extend_from_slice(&c.weight().to_le_bytes());
    }
    out
}

/// Deserializes and validates a digest made by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<TDigest> {
    if bytes.len() < 40 || !(bytes.len() - 40).is_multiple_of(16) {
        return exec_err!("a digest of {} bytes is malformed", bytes.len());
    }
    let word = |i: usize| -> [u8; 8] { bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes") };
    let max_size = u64::from_le_bytes(word(0)) as usize;
    let centroids = (bytes.len() - 40) / 16;
    if max_size == 0 || max_size > MAX_CENTROIDS || centroids > MAX_CENTROIDS {
        return exec_err!("a digest of size {max_size} with {centroids} centroids is malformed");
    }
    let f = |i: usize| f64::from_le_bytes(word(i));
    let centroids = (0..centroids)
        .map(|c| Centroid::new(f(5 + 2 * c), f(6 + 2 * c)))
        .collect();
    TDigest::try_from_parts(max_size, f(1), f(2), f(3), f(4), centroids)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DigestUdaf {
    signature: Signature,
}

impl AggregateUDFImpl for DigestUdaf {
    fn name(&self) -> &str {
        DIGEST
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(DigestAccumulator::default()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[digest]", args.name),
            DataType::Binary,
            true,
        ))])
    }
}

/// Merges the digests in a Binary array into `into`.
fn merge_encoded(into: &mut TDigest, digests: &ArrayRef) -> Result<()> {
    let Some(digests) = digests.as_binary_opt::<i32>() else {
        return exec_err!("digests must be Binary, not {}", digests.data_type());
    };
    let mut all = vec![std::mem::replace(into, TDigest::new(DEFAULT_MAX_SIZE))];
    for bytes in digests.iter().flatten() {
        all.push(decode(bytes)?);
    }
    *into = TDigest::merge_digests(&all);
    Ok(())
}

#[derive(Debug)]
struct DigestAccumulator {
    digest: TDigest,
}

impl Default for DigestAccumulator {
    fn default() -> Self {
        Self {
            digest: TDigest::new(DEFAULT_MAX_SIZE),
        }
    }
}

impl Accumulator for DigestAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        // As DataFusion's approx_percentile_cont: nulls out, sorted, merged as f64.
        let mut values = Arc::clone(&values[0]);
        if values.null_count() > 0 {
            values = filter(&values, &is_not_null(&values)?)?;
        }
        let sorted = cast(&sort(&values, None)?, &DataType::Float64)?;
        let sorted = sorted.as_primitive::<Float64Type>();
        self.digest = self.digest.merge_sorted_f64(sorted.values());
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(encode(&self.digest))))
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.digest.size() - size_of_val(&self.digest)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        merge_encoded(&mut self.digest, &states[0])
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct QuantileUdaf {
    signature: Signature,
}

impl AggregateUDFImpl for QuantileUdaf {
    fn name(&self) -> &str {
        QUANTILE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let q = args
            .exprs
            .get(1)
            .and_then(|e| e.downcast_ref::<datafusion::physical_expr::expressions::Literal>())
            .and_then(|l| match l.value() {
                ScalarValue::Float64(Some(q)) => Some(*q),
                _ => None,
            });
        match q {
            Some(q) if (0.0..=1.0).contains(&q) => Ok(Box::new(QuantileAccumulator {
                digest: TDigest::new(DEFAULT_MAX_SIZE),
                q,
            })),
            _ => plan_err!("{QUANTILE} takes a quantile literal between 0 and 1"),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[digest]", args.name),
            DataType::Binary,
            true,
        ))])
    }
}

#[derive(Debug)]
struct QuantileAccumulator {
    digest: TDigest,
    q: f64,
}

impl Accumulator for QuantileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        merge_encoded(&mut self.digest, &values[0])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.digest.count() == 0.0 {
            return Ok(ScalarValue::Float64(None));
        }
        Ok(ScalarValue::Float64(Some(
            self.digest.estimate_quantile(self.q),
        )))
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.digest.size() - size_of_val(&self.digest)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(encode(&self.digest)))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        merge_encoded(&mut self.digest, &states[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::BinaryArray;

    /// Binary digests of `values`.
    fn digests_of(values: &[&[f64]]) -> BinaryArray {
        let encoded: Vec<Vec<u8>> = values
            .iter()
            .map(|v| {
                let mut sorted = v.to_vec();
                sorted.sort_by(f64::total_cmp);
                encode(&TDigest::new(DEFAULT_MAX_SIZE).merge_sorted_f64(&sorted))
            })
            .collect();
        BinaryArray::from_iter_values(encoded.iter())
    }

    #[test]
    fn merged_digests_give_the_quantiles_of_all_values() {
        let digests: ArrayRef = Arc::new(digests_of(&[&[1.0, 2.0, 3.0], &[4.0, 5.0], &[]]));
        let mut acc = QuantileAccumulator {
            digest: TDigest::new(DEFAULT_MAX_SIZE),
            q: 0.5,
        };
        acc.update_batch(&[digests]).unwrap();
        let all = TDigest::new(DEFAULT_MAX_SIZE).merge_sorted_f64(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(
            acc.evaluate().unwrap(),
            ScalarValue::Float64(Some(all.estimate_quantile(0.5)))
        );
        assert_eq!(all.estimate_quantile(0.5), 3.0);
        let mut empty = QuantileAccumulator {
            digest: TDigest::new(DEFAULT_MAX_SIZE),
            q: 0.9,
        };
        assert_eq!(empty.evaluate().unwrap(), ScalarValue::Float64(None));
    }

    #[test]
    fn bad_digests_are_errors() {
        let good = encode(&TDigest::new(DEFAULT_MAX_SIZE).merge_sorted_f64(&[1.0, 2.0]));
        assert!(decode(&good).is_ok());
        assert!(decode(&good[..39]).is_err());
        assert!(decode(&good[..good.len() - 1]).is_err());
        let mut unsorted = good.clone();
        // Swap the two centroids' means: 2.0 before 1.0.
        unsorted[40..48].copy_from_slice(&2.0f64.to_le_bytes());
        unsorted[56..64].copy_from_slice(&1.0f64.to_le_bytes());
        assert!(decode(&unsorted).is_err());
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        let mut zero_weight = good;
        zero_weight[48..56].copy_from_slice(&0.0f64.to_le_bytes());
        assert!(decode(&zero_weight).is_err());
    }
}
