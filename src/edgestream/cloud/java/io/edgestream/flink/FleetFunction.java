package io.edgestream.flink;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.TableFunction;
import org.apache.flink.types.Row;

/**
 * {@code fleet_stats(src INT, partition INT, offset BIGINT, value BYTES, config STRING)}: the
 * fleet statistics of the cloud job ({@link FleetAnalytics}) as a table function. One instance
 * must see every record of both inputs in order (the job runs it at parallelism 1); per input
 * row it emits the rows due: {@code (kind, k, v, h, scope)}.
 */
@FunctionHint(output = @DataTypeHint(
    "ROW<`kind` STRING, `k` BYTES, `v` BYTES, `h` STRING, `scope` STRING>"))
public class FleetFunction extends TableFunction<Row> {
  private transient FleetAnalytics engine;

  public void eval(Integer src, Integer partition, Long offset, byte[] value, String config) {
    long now = System.currentTimeMillis();
    if (engine == null) {
      engine = new FleetAnalytics(config, now);
    }
    for (FleetAnalytics.Out o : engine.row(src, partition, offset, value, now)) {
      collect(Row.of(o.kind(), o.key(), o.value(), o.headers(), o.scope()));
    }
  }

  @Override
  public boolean isDeterministic() {
    return false; // state across calls: never folded, deduplicated or reordered
  }
}
