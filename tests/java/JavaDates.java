import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.text.ParsePosition;
import java.text.SimpleDateFormat;
import java.util.Date;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.TimeZone;

/**
 * java.text.SimpleDateFormat as Kafka Connect's TimestampConverter and TimestampRouter use it, for
 * tests/integration/test_timefmt_java.py. Reads tab-separated lines from stdin and writes one line
 * per input line:
 *
 *   F <tab> zone <tab> pattern <tab> epoch-millis   ->  the formatted text
 *   P <tab> zone <tab> pattern <tab> text           ->  the parsed epoch-millis (DateFormat.parse(String),
 *                                                       which ignores text after the pattern), or ERR
 *
 * Locale en_US, as the JVM default locale of a Kafka Connect worker usually is; the time zone is
 * set per line (Kafka Connect sets UTC).
 */
public final class JavaDates {
    public static void main(String[] args) throws Exception {
        Locale.setDefault(Locale.US);
        Map<String, SimpleDateFormat> formats = new HashMap<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.split("\t", 4);
            String key = f[1] + "\t" + f[2];
            SimpleDateFormat fmt = formats.get(key);
            if (fmt == null) {
                fmt = new SimpleDateFormat(f[2], Locale.US);
                fmt.setTimeZone(TimeZone.getTimeZone(f[1]));
                formats.put(key, fmt);
            }
            if (f[0].equals("F")) {
                out.write(fmt.format(new Date(Long.parseLong(f[3]))));
            } else {
                ParsePosition pos = new ParsePosition(0);
                Date d = fmt.parse(f[3], pos);
                out.write(d == null ? "ERR" : Long.toString(d.getTime()));
            }
            out.write('\n');
        }
        out.flush();
    }
}
