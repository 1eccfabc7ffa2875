-- Service map: one edge per client process and server, with rate, errors and p95 latency.
SELECT comm AS client, dst_ip, dst_port, protocol, count(*) AS calls,
       sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors,
       approx_percentile_cont(duration_ns, 0.95) AS p95_ns
FROM calls WHERE $__timeFilter(ts)
GROUP BY comm, dst_ip, dst_port, protocol
