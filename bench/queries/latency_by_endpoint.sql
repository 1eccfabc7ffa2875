-- Table: duration percentiles per server and endpoint.
SELECT dst_ip, dst_port, resource, count(*) AS calls,
       approx_percentile_cont(duration_ns, 0.50) AS p50_ns,
       approx_percentile_cont(duration_ns, 0.95) AS p95_ns,
       approx_percentile_cont(duration_ns, 0.99) AS p99_ns
FROM calls WHERE $__timeFilter(ts)
GROUP BY dst_ip, dst_port, resource ORDER BY p99_ns DESC LIMIT 50
