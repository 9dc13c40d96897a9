package persona.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.time.Duration;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilders;
import org.neo4j.io.ByteUnit;

/**
 * Test-only launcher: runs Neo4j 5 (Community) in-process via neo4j-harness, with Bolt on
 * loopback and auth disabled, for the Python test suite.
 *
 * <pre>
 * java -jar neo4j-launcher.jar --data-dir DIR [--work-dir DIR] [--port N] [--page-cache-mb N]
 * </pre>
 *
 * <ul>
 *   <li>{@code --data-dir}: Neo4j's data directory (databases + transaction logs). Kept across
 *       runs: starting again with the same directory (and port) simulates a restart.
 *   <li>{@code --work-dir}: where the harness puts its throw-away home folder (logs, certs);
 *       defaults to a sibling {@code run} folder of the data directory. The harness deletes its
 *       own folder on a clean stop.
 *   <li>{@code --port}: Bolt port on 127.0.0.1; 0 (the default) picks a free one.
 * </ul>
 *
 * <p>Once Bolt accepts connections it prints exactly one line {@code NEO4J_READY
 * bolt://127.0.0.1:PORT} on stdout. It stops cleanly (checkpoint, then exit 0) when stdin reaches
 * end-of-file or on SIGTERM/SIGINT, and prints {@code NEO4J_STOPPED} after the shutdown.
 */
public final class Neo4jLauncher {
    private static final Object LOCK = new Object();
    private static Neo4j neo4j;
    private static boolean stopped;

    private Neo4jLauncher() {}

    public static void main(String[] args) throws Exception {
        Path dataDir = null;
        Path workDir = null;
        int port = 0;
        long pageCacheMb = 32;
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            String value = i + 1 < args.length ? args[i + 1] : null;
            switch (arg) {
                case "--data-dir" -> dataDir = Path.of(require(arg, value));
                case "--work-dir" -> workDir = Path.of(require(arg, value));
                case "--port" -> port = Integer.parseInt(require(arg, value));
                case "--page-cache-mb" -> pageCacheMb = Long.parseLong(require(arg, value));
                default -> usage("unknown argument: " + arg);
            }
            i++;
        }
        if (dataDir == null) {
            usage("--data-dir is required");
        }
        dataDir = dataDir.toAbsolutePath().normalize();
        if (workDir == null) {
            workDir = dataDir.resolveSibling("run");
        }
        workDir = workDir.toAbsolutePath().normalize();
        Files.createDirectories(dataDir);
        Files.createDirectories(workDir);

        // Keep stdout for the protocol lines only; the JVM's own noise goes to stderr.
        PrintStream protocol = new PrintStream(
                new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);
        System.setOut(System.err);

        Runtime.getRuntime().addShutdownHook(new Thread(() -> stop(protocol), "neo4j-launcher-stop"));

        long t0 = System.nanoTime();
        Neo4j started = Neo4jBuilders.newInProcessBuilder(workDir)
                .withDisabledServer() // no HTTP/HTTPS (Jetty): Bolt only, faster start
                .withConfig(GraphDatabaseSettings.data_directory, dataDir)
                .withConfig(GraphDatabaseSettings.auth_enabled, false)
                .withConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(pageCacheMb))
                .withConfig(GraphDatabaseSettings.udc_enabled, false)
                .withConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .withConfig(GraphDatabaseSettings.preallocate_store_files, false)
                // Netty's default graceful shutdown (quiet period per event loop group, one group
                // after another) makes a stop take ~10 s; tests stop and restart on purpose.
                .withConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                .withConfig(GraphDatabaseInternalSettings.netty_server_shutdown_timeout,
                        Duration.ofSeconds(2))
                .withConfig(BoltConnector.enabled, true)
                .withConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .withConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .withConfig(BoltConnector.advertised_address, new SocketAddress("127.0.0.1", port))
                .build();
        synchronized (LOCK) {
            neo4j = started;
            if (stopped) { // SIGTERM arrived while starting
                started.close();
                return;
            }
        }
        URI bolt = started.boltURI();
        System.err.printf("neo4j-launcher: started in %d ms, data dir %s%n",
                TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0), dataDir);
        protocol.println("NEO4J_READY bolt://127.0.0.1:" + bolt.getPort());
        protocol.flush();

        // Block until the parent closes our stdin (or dies), then exit through the shutdown hook.
        InputStream in = System.in;
        byte[] buf = new byte[256];
        try {
            while (in.read(buf) != -1) {
                // input is ignored
            }
        } catch (IOException e) {
            // treat as end of input
        }
        System.exit(0);
    }

    private static void stop(PrintStream protocol) {
        Neo4j toClose;
        synchronized (LOCK) {
            if (stopped) {
                return;
            }
            stopped = true;
            toClose = neo4j;
        }
        if (toClose != null) {
            try {
                toClose.close();
                protocol.println("NEO4J_STOPPED");
                protocol.flush();
            } catch (RuntimeException e) {
                e.printStackTrace();
            }
        }
    }

    private static String require(String arg, String value) {
        if (value == null) {
            usage(arg + " needs a value");
        }
        return value;
    }

    private static void usage(String message) {
        System.err.println("neo4j-launcher: " + message);
        System.err.println("usage: java -jar neo4j-launcher.jar --data-dir DIR [--work-dir DIR]"
                + " [--port N] [--page-cache-mb N]");
        System.exit(2);
    }
}
