//! Grafana macros in SQL, expanded before planning with the query's time range and interval:
//!
//! | macro | expands to |
//! | --- | --- |
//! | `$__timeFilter(col)` | `(col >= TIMESTAMP '<from>' AND col <= TIMESTAMP '<to>')` |
//! | `$__timeFrom()`, `$__timeTo()` | `TIMESTAMP '<from>'`, `TIMESTAMP '<to>'` |
//! | `$__interval` | `INTERVAL '<ms> milliseconds'` |
//! | `$__interval_ms` | `<ms>` |
//! | `$__timeGroup(col, interval)` | `date_bin(INTERVAL '<ms> milliseconds', col)` |
//! | `$__timeGroupAlias(col, interval)` | the same, `AS "time"` |
//!
//! `interval` is `$__interval` or a Grafana duration (`30s`, `'5m'`, `1h`, `500ms`, `1d`).
//! Timestamps are UTC with nanoseconds. Filters on the time column reach the agents like any
//! other filter, so agents skip chunks outside the range. Template variables (`$namespace`)
//! are interpolated by Grafana's frontend before the query reaches the backend.

use chrono::{DateTime, SecondsFormat};

/// What the macros expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacroContext {
    /// Start of the time range, ns since the epoch.
    pub from_ns: i64,
    /// End of the time range, ns since the epoch.
    pub to_ns: i64,
    /// Suggested time between points, milliseconds (at least 1).
    pub interval_ms: i64,
}

const MACROS: &str = "$__timeFilter(col), $__timeFrom(), $__timeTo(), $__interval, \
                      $__interval_ms, $__timeGroup(col, interval), $__timeGroupAlias(col, interval)";

/// A SQL timestamp literal for `ns` nanoseconds since the epoch (UTC, nanosecond precision).
pub fn timestamp(ns: i64) -> String {
    let t = DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Nanos, true);
    format!("TIMESTAMP '{t}'")
}

/// A SQL string literal holding `s` (single quotes doubled).
pub fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Milliseconds of a Grafana duration (`500ms`, `30s`, `5m`, `1h`, `1d`, `1w`), quoted or not.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let t = text.trim().trim_matches('\'').trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return None,
    };
    n.checked_mul(unit_ms).filter(|&ms| ms > 0)
}

/// The arguments of a macro call whose `(` is at `open`: the text up to the matching `)`,
/// split at top-level commas, and the index after the `)`.
fn call_args(sql: &str, open: usize) -> Result<(Vec<String>, usize), String> {
    let bytes = sql.as_bytes();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut args = Vec::new();
    let mut start = open + 1;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'\'' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    let last = sql[start..i].trim();
                    if !last.is_empty() || !args.is_empty() {
                        args.push(last.to_owned());
                    }
                    return Ok((args, i + 1));
                }
            }
            b',' if !quoted && depth == 1 => {
                args.push(sql[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    Err("a macro's argument list is not closed with `)`".to_owned())
}

fn interval_arg(arg: &str, ctx: &MacroContext) -> Result<i64, String> {
    if arg == "$__interval" {
        return Ok(ctx.interval_ms);
    }
    parse_duration_ms(arg).ok_or_else(|| {
        format!("`{arg}` is not an interval: use $__interval or a duration such as '30s', '5m'")
    })
}

/// Expands every Grafana macro in `sql`; an unknown macro or a wrong argument list is an
/// error that names it.
pub fn expand(sql: &str, ctx: &MacroContext) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = 0;
    while let Some(found) = sql[rest..].find("$__") {
        let at = rest + found;
        out.push_str(&sql[rest..at]);
        let name_end = sql[at + 3..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(sql.len(), |i| at + 3 + i);
        let name = &sql[at + 3..name_end];
        let has_args = sql[name_end..].starts_with('(');
        let (args, end) = if has_args {
            call_args(sql, name_end)?
        } else {
            (Vec::new(), name_end)
        };
        let want = |n: usize| {
            if args.len() == n && has_args {
                Ok(())
            } else {
                Err(format!(
                    "$__{name} takes {n} argument{}: $__{name}({})",
                    if n == 1 { "" } else { "s" },
                    match n {
                        0 => "",
                        1 => "col",
                        _ => "col, interval",
                    }
                ))
            }
        };
        let expansion = match name {
            "timeFilter" => {
                want(1)?;
                let col = &args[0];
                format!(
                    "({col} >= {} AND {col} <= {})",
                    timestamp(ctx.from_ns),
                    timestamp(ctx.to_ns)
                )
            }
            "timeFrom" => {
                want(0)?;
                timestamp(ctx.from_ns)
            }
            "timeTo" => {
                want(0)?;
                timestamp(ctx.to_ns)
            }
            "interval_ms" if !has_args => ctx.interval_ms.to_string(),
            "interval" if !has_args => format!("INTERVAL '{} milliseconds'", ctx.interval_ms),
            "timeGroup" | "timeGroupAlias" => {
                if args.len() == 3 {
                    return Err(format!("$__{name}: a fill argument is not supported"));
                }
                want(2)?;
                let ms = interval_arg(&args[1], ctx)?;
                let bin = format!("date_bin(INTERVAL '{ms} milliseconds', {})", args[0]);
                if name == "timeGroupAlias" {
                    format!("{bin} AS \"time\"")
                } else {
                    bin
                }
            }
            _ => return Err(format!("unknown macro $__{name} (supported: {MACROS})")),
        };
        out.push_str(&expansion);
        rest = end;
    }
    out.push_str(&sql[rest..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: MacroContext = MacroContext {
        // 2023-11-14T22:13:20Z and one minute later.
        from_ns: 1_700_000_000_000_000_000,
        to_ns: 1_700_000_060_000_000_000,
        interval_ms: 30_000,
    };

    #[test]
    fn expands_every_macro() {
        assert_eq!(
            expand(
                "SELECT * FROM flows WHERE $__timeFilter(end_ts) AND x",
                &CTX
            )
            .unwrap(),
            "SELECT * FROM flows WHERE (end_ts >= TIMESTAMP '2023-11-14T22:13:20.000000000Z' \
             AND end_ts <= TIMESTAMP '2023-11-14T22:14:20.000000000Z') AND x"
        );
        assert_eq!(
            expand("$__timeFrom(), $__timeTo()", &CTX).unwrap(),
            "TIMESTAMP '2023-11-14T22:13:20.000000000Z', TIMESTAMP '2023-11-14T22:14:20.000000000Z'"
        );
        assert_eq!(
            expand("$__interval_ms $__interval", &CTX).unwrap(),
            "30000 INTERVAL '30000 milliseconds'"
        );
        assert_eq!(
            expand(
                "SELECT $__timeGroupAlias(ts, $__interval), $__timeGroup(ts, '5m')",
                &CTX
            )
            .unwrap(),
            "SELECT date_bin(INTERVAL '30000 milliseconds', ts) AS \"time\", \
             date_bin(INTERVAL '300000 milliseconds', ts)"
        );
        // Nested calls and quoted commas and parentheses in arguments.
        assert_eq!(
            expand("$__timeFilter(coalesce(ts, end_ts))", &CTX).unwrap(),
            "(coalesce(ts, end_ts) >= TIMESTAMP '2023-11-14T22:13:20.000000000Z' AND \
             coalesce(ts, end_ts) <= TIMESTAMP '2023-11-14T22:14:20.000000000Z')"
        );
        assert_eq!(
            expand("no macros, '$ _'", &CTX).unwrap(),
            "no macros, '$ _'"
        );
    }

    #[test]
    fn bad_macros_are_clear_errors() {
        let err = |sql: &str| expand(sql, &CTX).unwrap_err();
        assert!(err("$__timeFiltr(ts)").starts_with("unknown macro $__timeFiltr (supported: "));
        assert_eq!(
            err("$__timeFilter()"),
            "$__timeFilter takes 1 argument: $__timeFilter(col)"
        );
        assert_eq!(
            err("$__timeFilter"),
            "$__timeFilter takes 1 argument: $__timeFilter(col)"
        );
        assert_eq!(
            err("$__timeFilter(ts"),
            "a macro's argument list is not closed with `)`"
        );
        assert_eq!(
            err("$__timeGroup(ts, 5 minutes)"),
            "`5 minutes` is not an interval: use $__interval or a duration such as '30s', '5m'"
        );
        assert_eq!(
            err("$__timeGroup(ts, 1m, 0)"),
            "$__timeGroup: a fill argument is not supported"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("'30s'"), Some(30_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("1w"), Some(604_800_000));
        assert_eq!(parse_duration_ms("0s"), None);
        assert_eq!(parse_duration_ms("5"), None);
        assert_eq!(parse_duration_ms("5 m"), None);
    }
}
