package io.edgestream.flink;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The open event-time windows of the fleet statistics (the cloud job's fleet analytics).
 *
 * <p>A device summary ({@code scope == "device"}, of the job's source window size, see
 * {@link #lineage}) counts in the cloud window {@code [s, s + W)} that contains its
 * {@code window_start}, for three scopes: the fleet ({@code *}), its site and its device type.
 * An alert with status {@code open} counts ({@code alert_count}) in the window of its
 * {@code ts}.
 *
 * <p>Per window and scope: distinct devices, readings, anomalous readings, per-channel pooled
 * mean and population std (count/mean/m2 merged with Chan et al.'s formula from each summary's
 * count/sum/m2, in arrival order; a scope's row merges its (site, device type) cells in the
 * order they opened), the worst {@code worstN} devices (anomaly count, then max score, then
 * id), the model-version mix (readings per version) and {@code late_count}.
 *
 * <p>Event time (Flink's semantics, driven by the caller's watermark):
 * <ul>
 *   <li>{@link #advance} with watermark {@code wm} <em>fires</em> every window with
 *       {@code end - 1 <= wm} once (its rows are returned), and re-fires, with the updated
 *       rows, a fired window that received more data since.
 *   <li>A window is <em>purged</em> once {@code end - 1 + allowed lateness <= wm} (the outage
 *       budget): its accumulators are dropped, its last rows kept ({@code retention}) so later
 *       data still shows.
 *   <li>A summary or alert that arrives after its window fired is <em>late</em>: counted in
 *       that row's {@code late_count}; within the allowed lateness it also counts in the
 *       statistics (the row is re-emitted), after it only in {@code late_count} (the row is
 *       re-emitted with the new count). Nothing is dropped silently: past {@code retention} it
 *       is counted as {@code expired}.
 * </ul>
 *
 * <p>Rows are keyed by {@code (window_start, scope, scope_key)}: the last row of a key is the
 * current one (an upsert stream; Flink SQL reads it with {@code upsert-kafka} or {@code json}).
 * The offline reference ({@code tests/test_cloud/reference.py}) computes the same rows another
 * way; they agree to 1e-9.
 */
final class FleetStats {
  static final long DAY_MS = 86_400_000L;
  static final long MIN_WATERMARK = -(1L << 62);

  /** One device summary, as the statistics read it. */
  static final class Summary {
    String scopeKey;
    String site;
    String deviceType;
    long windowStart;
    long count;
    long anomalies;
    Double maxScore;
    String modelVersion;
    String[] channels; // names: the first counts.length (the decoder's array may be longer)
    long[] counts;
    double[] sums;
    double[] m2;
  }

  /** A window's data of one (site, device type): its three scopes share it. */
  static final class Cell {
    final LinkedHashMap<String, Object[]> devices = new LinkedHashMap<>(); // id -> [long, Double]
    long readings;
    long anomalies;
    final LinkedHashMap<String, double[]> channels = new LinkedHashMap<>(); // n, mean, m2
    final LinkedHashMap<String, Long> versions = new LinkedHashMap<>();
    long changes; // summaries added: a row of this cell is current while it stays the same

    void add(Summary s) {
      changes++;
      readings += s.count;
      anomalies += s.anomalies;
      addDevice(devices, s.scopeKey, s.anomalies, s.maxScore);
      String version = s.modelVersion == null || s.modelVersion.isEmpty() ? "unknown"
          : s.modelVersion;
      versions.merge(version, s.count, Long::sum);
      for (int i = 0; i < s.counts.length; i++) {
        long n = s.counts[i];
        if (n > 0) {
          fold(channels, s.channels[i], n, s.sums[i] / n, s.m2[i]);
        }
      }
    }

    void merge(Cell other) {
      readings += other.readings;
      anomalies += other.anomalies;
      for (Map.Entry<String, Object[]> e : other.devices.entrySet()) {
        addDevice(devices, e.getKey(), (Long) e.getValue()[0], (Double) e.getValue()[1]);
      }
      for (Map.Entry<String, Long> e : other.versions.entrySet()) {
        versions.merge(e.getKey(), e.getValue(), Long::sum);
      }
      for (Map.Entry<String, double[]> e : other.channels.entrySet()) {
        double[] v = e.getValue();
        fold(channels, e.getKey(), v[0], v[1], v[2]);
      }
    }
  }

  private static void addDevice(Map<String, Object[]> devices, String id, long anomalies,
      Double score) {
    Object[] dev = devices.get(id);
    if (dev == null) {
      devices.put(id, new Object[] {anomalies, score});
      return;
    }
    dev[0] = (Long) dev[0] + anomalies;
    if (score != null && (dev[1] == null || score > (Double) dev[1])) {
      dev[1] = score;
    }
  }

  private static void fold(Map<String, double[]> channels, String name, double n, double mean,
      double m2) {
    double[] acc = channels.get(name);
    if (acc == null) {
      channels.put(name, new double[] {n, mean, m2});
      return;
    }
    double na = acc[0];
    double total = na + n;
    double delta = mean - acc[1];
    acc[0] = total;
    acc[1] = acc[1] + delta * n / total;
    acc[2] = acc[2] + m2 + delta * delta * na * n / total;
  }

  /** The accumulator of one window and scope. */
  static final class ScopeWindow {
    long alerts;
    long late;
    final List<Cell> cells = new ArrayList<>();
    private StatsRow last; // the row last computed, and the state it was computed at
    private long lastState = -1;

    /** Grows with every change of this accumulator (its counts, its cells and theirs). */
    private long state() {
      long v = alerts + late + cells.size();
      for (Cell c : cells) {
        v += c.changes;
      }
      return v;
    }

    /** {@link #row}, or the row last computed when nothing changed since (its
     * {@code computed_at} then stays that row's). */
    StatsRow current(long start, long end, String[] scope, int worstN, long now) {
      long v = state();
      if (last == null || v != lastState) {
        last = row(start, end, scope, worstN, now);
        lastState = v;
      }
      return last;
    }

    Cell merged() {
      if (cells.size() == 1) {
        return cells.get(0);
      }
      Cell out = new Cell();
      for (Cell c : cells) {
        out.merge(c);
      }
      return out;
    }

    StatsRow row(long start, long end, String[] scope, int worstN, long now) {
      Cell data = merged();
      StatsRow r = new StatsRow();
      r.start = start;
      r.end = end;
      r.scope = scope[0];
      r.scopeKey = scope[1];
      r.deviceCount = data.devices.size();
      r.readings = data.readings;
      r.anomalies = data.anomalies;
      r.alerts = alerts;
      r.rate = data.readings != 0 ? (double) data.anomalies / data.readings : 0.0;
      for (Map.Entry<String, double[]> e : new TreeMap<>(data.channels).entrySet()) {
        double[] v = e.getValue();
        r.channels.put(e.getKey(), new double[] {v[0], v[1], Math.sqrt(Math.max(v[2], 0.0) / v[0])});
      }
      List<Map.Entry<String, Object[]>> ranked = new ArrayList<>(data.devices.entrySet());
      ranked.sort(WORST);
      for (Map.Entry<String, Object[]> e : ranked.subList(0, Math.min(worstN, ranked.size()))) {
        r.worst.add(new Object[] {e.getKey(), e.getValue()[0], e.getValue()[1]});
      }
      r.versions.putAll(new TreeMap<>(data.versions));
      r.late = late;
      r.computedAt = now;
      return r;
    }
  }

  /** Anomaly count descending, then max score descending (none last), then device id. */
  private static final Comparator<Map.Entry<String, Object[]>> WORST = (a, b) -> {
    int c = Long.compare((Long) b.getValue()[0], (Long) a.getValue()[0]);
    if (c != 0) {
      return c;
    }
    double sa = a.getValue()[1] == null ? Double.NEGATIVE_INFINITY : (Double) a.getValue()[1];
    double sb = b.getValue()[1] == null ? Double.NEGATIVE_INFINITY : (Double) b.getValue()[1];
    c = Double.compare(sb, sa);
    return c != 0 ? c : a.getKey().compareTo(b.getKey());
  };

  /** A FleetStats row (schemas/fleet_stats.avsc), written as JSON. */
  static final class StatsRow {
    long start;
    long end;
    String scope;
    String scopeKey;
    int deviceCount;
    long readings;
    long anomalies;
    long alerts;
    double rate;
    final LinkedHashMap<String, double[]> channels = new LinkedHashMap<>(); // count, mean, std
    final List<Object[]> worst = new ArrayList<>(); // id, anomalies, max score
    final LinkedHashMap<String, Long> versions = new LinkedHashMap<>();
    long late;
    long computedAt;
    boolean first; // returned by the advance that fired its window

    StatsRow copy(long now) {
      StatsRow r = new StatsRow();
      r.start = start;
      r.end = end;
      r.scope = scope;
      r.scopeKey = scopeKey;
      r.deviceCount = deviceCount;
      r.readings = readings;
      r.anomalies = anomalies;
      r.alerts = alerts;
      r.rate = rate;
      r.channels.putAll(channels);
      r.worst.addAll(worst);
      r.versions.putAll(versions);
      r.late = late;
      r.computedAt = now;
      return r;
    }

    String key() {
      return start + "|" + scope + "|" + scopeKey;
    }

    /** The JSON object's first members: the row's key and counts ({@code all}: with the
     * device count and the alert count). */
    private StringBuilder head(int capacity, boolean all) {
      StringBuilder b = new StringBuilder(capacity);
      b.append("{\"window_start\":").append(start).append(",\"window_end\":").append(end);
      b.append(",\"scope\":");
      Json.string(b, scope);
      b.append(",\"scope_key\":");
      Json.string(b, scopeKey);
      if (all) {
        b.append(",\"device_count\":").append(deviceCount);
      }
      b.append(",\"reading_count\":").append(readings);
      b.append(",\"anomaly_count\":").append(anomalies);
      if (all) {
        b.append(",\"alert_count\":").append(alerts);
      }
      b.append(",\"anomaly_rate\":");
      Json.number(b, rate);
      return b;
    }

    /** What the anomaly-rate trigger reads of a row (JSON; the row's own keys). */
    String rateJson() {
      return head(160, false).append('}').toString();
    }

    String json() {
      StringBuilder b = head(256, true);
      b.append(",\"channels\":{");
      String sep = "";
      for (Map.Entry<String, double[]> e : channels.entrySet()) {
        b.append(sep);
        sep = ",";
        Json.string(b, e.getKey());
        b.append(":{\"count\":").append((long) e.getValue()[0]).append(",\"mean\":");
        Json.number(b, e.getValue()[1]);
        b.append(",\"std\":");
        Json.number(b, e.getValue()[2]);
        b.append('}');
      }
      b.append("},\"worst_devices\":[");
      sep = "";
      for (Object[] w : worst) {
        b.append(sep).append("{\"device_id\":");
        sep = ",";
        Json.string(b, (String) w[0]);
        b.append(",\"anomaly_count\":").append((long) (Long) w[1]).append(",\"max_score\":");
        Json.number(b, (Double) w[2]);
        b.append('}');
      }
      b.append("],\"model_versions\":{");
      sep = "";
      for (Map.Entry<String, Long> e : versions.entrySet()) {
        b.append(sep);
        sep = ",";
        Json.string(b, e.getKey());
        b.append(':').append((long) e.getValue());
      }
      b.append("},\"late_count\":").append(late).append(",\"computed_at\":").append(computedAt);
      return b.append('}').toString();
    }
  }

  private static String[][] scopes(String site, String deviceType) {
    return new String[][] {{"fleet", "*"}, {"site", site}, {"device_type", deviceType}};
  }

  /** A (window start, scope) pair, ordered as Python orders its tuples. */
  private record Dirty(long start, String scope, String key) implements Comparable<Dirty> {
    public int compareTo(Dirty o) {
      int c = Long.compare(start, o.start);
      if (c == 0) {
        c = scope.compareTo(o.scope);
      }
      return c != 0 ? c : key.compareTo(o.key);
    }
  }

  final long windowMs;
  final long latenessMs;
  final int worstN;
  final Long sourceWindowMs;
  final long retentionMs;
  /** An open window: its scopes' accumulators and its (site, device type) cells. */
  private static final class OpenWindow {
    /** scope ("kind|key") -> accumulator, in insertion order */
    final LinkedHashMap<String, ScopeWindow> scopes = new LinkedHashMap<>();
    final HashMap<String, Cell> cells = new HashMap<>(); // "site\0type" -> cell
    boolean fired;
  }

  /** window start -> open window (a tree: window starts are multiples of W, whose low bits a
   * hash table of {@code Long}s would put in few buckets) */
  private final TreeMap<Long, OpenWindow> open = new TreeMap<>();
  private final TreeSet<Dirty> dirty = new TreeSet<>();
  private final TreeMap<Long, LinkedHashMap<String, StatsRow>> closed = new TreeMap<>();
  private final TreeSet<Long> unfired = new TreeSet<>(); // open windows that never fired
  long watermark = MIN_WATERMARK;
  final Map<String, Long> counts = new LinkedHashMap<>();

  FleetStats(long windowMs, long latenessMs, int worstN, Long sourceWindowMs, long retentionMs) {
    this.windowMs = windowMs;
    this.latenessMs = latenessMs;
    this.worstN = worstN;
    this.sourceWindowMs = sourceWindowMs;
    this.retentionMs = retentionMs;
  }

  private void count(String name) {
    counts.merge(name, 1L, Long::sum);
  }

  long windowOf(long ts) {
    return ts - Math.floorMod(ts, windowMs);
  }

  /** The window size of the original edge windows a summary aggregates: an original window
   * ({@code rollup_level} 0) is its own size; a forwarder roll-up names its base size in its
   * id ({@code ...|r<level>.<base size>.<seq>}, {@code edgestream.forward.rollup}). */
  static long lineage(String summaryId, long start, long end, Integer rollupLevel) {
    if (rollupLevel == null || rollupLevel == 0) {
      return end - start;
    }
    String sid = summaryId == null ? "" : summaryId;
    String tail = sid.substring(sid.lastIndexOf('|') + 1);
    if (tail.startsWith("r") && tail.indexOf('.') >= 0) {
      String[] parts = tail.split("\\.", -1);
      try {
        return Long.parseLong(parts[1].strip());
      } catch (NumberFormatException e) {
        // not a roll-up id: its own size
      }
    }
    return end - start;
  }

  /** Counts one deduplicated summary: counted, late, expired or skipped (site summaries and
   * other window lineages repeat device data). */
  String addSummary(Summary s, String scope, long lineage) {
    if (!"device".equals(scope) || (sourceWindowMs != null && lineage != sourceWindowMs)) {
      count("skipped");
      return "skipped";
    }
    return add(s.windowStart, s.site, s.deviceType, s);
  }

  /** Counts one deduplicated alert: {@code open} ones raise the alert count. */
  String addAlert(String status, long ts, String site, String deviceType) {
    if (!"open".equals(status)) {
      count("skipped");
      return "skipped";
    }
    return add(ts, site, deviceType, null);
  }

  private boolean purged(long start) {
    return start + windowMs - 1 + latenessMs <= watermark;
  }

  private String add(long ts, String site, String deviceType, Summary summary) {
    long start = windowOf(ts);
    String[][] scopes = scopes(site, deviceType);
    boolean gone = closed.containsKey(start) || purged(start);
    OpenWindow window = gone ? null : open.get(start);
    boolean late = gone || (window != null && window.fired);
    if (gone) {
      LinkedHashMap<String, StatsRow> rows = closed.get(start);
      if (rows == null) {
        long horizon = watermark - latenessMs - retentionMs;
        if (start + windowMs <= horizon) {
          count("expired");
          return "expired";
        }
        rows = new LinkedHashMap<>();
        closed.put(start, rows);
      }
      for (String[] scope : scopes) {
        String k = scope[0] + "|" + scope[1];
        StatsRow row = rows.get(k);
        if (row == null) {
          row = new ScopeWindow().row(start, start + windowMs, scope, worstN, 0);
          rows.put(k, row);
        }
        row.late += 1;
        dirty.add(new Dirty(start, scope[0], scope[1]));
      }
      count("late_after_lateness");
      return "late";
    }
    if (window == null) {
      window = new OpenWindow();
      open.put(start, window);
      unfired.add(start);
    }
    LinkedHashMap<String, ScopeWindow> windows = window.scopes;
    if (summary != null) {
      String cellKey = site + "\u0000" + deviceType;
      Cell cell = window.cells.get(cellKey);
      if (cell == null) {
        cell = new Cell();
        window.cells.put(cellKey, cell);
        for (String[] scope : scopes) {
          windows.computeIfAbsent(scope[0] + "|" + scope[1], k -> new ScopeWindow()).cells.add(cell);
        }
      }
      cell.add(summary);
    }
    if (summary == null || late) {
      for (String[] scope : scopes) {
        ScopeWindow acc = windows.computeIfAbsent(scope[0] + "|" + scope[1],
            k -> new ScopeWindow());
        if (summary == null) {
          acc.alerts += 1;
        }
        if (late) {
          acc.late += 1;
          dirty.add(new Dirty(start, scope[0], scope[1]));
        }
      }
    }
    count(late ? "late" : "counted");
    return late ? "late" : "counted";
  }

  private static String[] scopeOf(String k) {
    int bar = k.indexOf('|');
    return new String[] {k.substring(0, bar), k.substring(bar + 1)};
  }

  /** Moves event time to {@code wm}: the rows to emit (first firings and updates). */
  List<StatsRow> advance(long wm, long now) {
    watermark = Math.max(watermark, wm);
    List<StatsRow> out = new ArrayList<>();
    // windows that end by the watermark and never fired: end - 1 <= wm (only those are
    // visited: the open windows of a partition read far ahead are not walked per advance)
    for (Iterator<Long> it = unfired.headSet(watermark - windowMs + 1, true).iterator();
        it.hasNext(); ) {
      long start = it.next();
      it.remove();
      long end = start + windowMs;
      OpenWindow window = open.get(start);
      window.fired = true;
      for (Map.Entry<String, ScopeWindow> sw : window.scopes.entrySet()) {
        String[] scope = scopeOf(sw.getKey());
        StatsRow row = sw.getValue().current(start, end, scope, worstN, now);
        row.first = true;
        out.add(row);
        dirty.remove(new Dirty(start, scope[0], scope[1]));
      }
    }
    for (Dirty d : dirty) {
      String k = d.scope + "|" + d.key;
      OpenWindow window = open.get(d.start);
      if (window != null) {
        out.add(window.scopes.get(k).current(d.start, d.start + windowMs,
            new String[] {d.scope, d.key}, worstN, now));
      } else if (closed.containsKey(d.start)) {
        StatsRow row = closed.get(d.start).get(k).copy(now);
        closed.get(d.start).put(k, row);
        out.add(row);
      }
    }
    dirty.clear();
    // purged: end - 1 + lateness <= wm (they all fired above: end - 1 <= wm)
    // (its rows as last emitted: they fired above, and a change since re-fired them)
    for (Iterator<Map.Entry<Long, OpenWindow>> it =
        open.headMap(watermark - windowMs + 1 - latenessMs, true).entrySet().iterator();
        it.hasNext(); ) {
      Map.Entry<Long, OpenWindow> e = it.next();
      long start = e.getKey();
      it.remove();
      long end = start + windowMs;
      LinkedHashMap<String, StatsRow> rows = new LinkedHashMap<>();
      for (Map.Entry<String, ScopeWindow> sw : e.getValue().scopes.entrySet()) {
        rows.put(sw.getKey(),
            sw.getValue().current(start, end, scopeOf(sw.getKey()), worstN, now));
      }
      closed.put(start, rows);
    }
    long horizon = watermark - latenessMs - retentionMs;
    closed.headMap(horizon - windowMs, true).clear(); // start + W <= horizon
    return out;
  }

  /** The end of a bounded input: every window fires (the watermark goes to +infinity). */
  List<StatsRow> flush(long now) {
    return advance(1L << 62, now);
  }
}
