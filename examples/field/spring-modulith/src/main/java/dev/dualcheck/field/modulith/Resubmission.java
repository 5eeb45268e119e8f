package dev.dualcheck.field.modulith;

import java.time.Duration;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.modulith.events.FailedEventPublications;
import org.springframework.modulith.events.IncompleteEventPublications;
import org.springframework.modulith.events.ResubmissionOptions;
import org.springframework.scheduling.annotation.SchedulingConfigurer;
import org.springframework.scheduling.config.ScheduledTaskRegistrar;
import org.springframework.stereotype.Component;

/**
 * The retry that the reference documentation leaves to the application ("In case the listener fails, the log entry
 * stays untouched so that retry mechanisms can be deployed depending on the application's needs", events.adoc,
 * section {@code publication-registry}), with the API it documents for it (section
 * {@code publication-registry.managing-publications}). Off by default, like the library: nothing resubmits an
 * incomplete publication while the application runs unless the application calls these.
 *
 * <ul>
 * <li>{@code MODULITH_RESUBMIT=incomplete}: every {@code MODULITH_RESUBMIT_INTERVAL},
 * {@code IncompleteEventPublications.resubmitIncompletePublicationsOlderThan(MODULITH_RESUBMIT_OLDER_THAN)} ("to
 * resubmit either the ones matching a given predicate or older than a given Duration relative to the original
 * publishing date");</li>
 * <li>{@code MODULITH_RESUBMIT=failed}: every {@code MODULITH_RESUBMIT_INTERVAL},
 * {@code FailedEventPublications.resubmit(ResubmissionOptions.defaults().withMinAge(MODULITH_RESUBMIT_OLDER_THAN))}
 * (the 2.0 lifecycle API: only publications in state FAILED, which a failed send or the Staleness Monitor
 * leaves).</li>
 * </ul>
 */
@Component
class Resubmission implements SchedulingConfigurer {

	private static final Logger LOG = LoggerFactory.getLogger(Resubmission.class);

	private final String mode;
	private final Duration interval;
	private final Duration olderThan;
	private final IncompleteEventPublications incomplete;
	private final FailedEventPublications failed;

	Resubmission(@Value("${orders.resubmit}") String mode, @Value("${orders.resubmit-interval}") Duration interval,
			@Value("${orders.resubmit-older-than}") Duration olderThan, IncompleteEventPublications incomplete,
			FailedEventPublications failed) {

		this.mode = mode.trim().toLowerCase();
		this.interval = interval;
		this.olderThan = olderThan;
		this.incomplete = incomplete;
		this.failed = failed;

		if (!this.mode.equals("off") && !this.mode.equals("incomplete") && !this.mode.equals("failed")) {
			throw new IllegalArgumentException("MODULITH_RESUBMIT=" + mode + ": use off, incomplete or failed");
		}
	}

	@Override
	public void configureTasks(ScheduledTaskRegistrar registrar) {

		switch (mode) {
			case "incomplete" -> {
				LOG.info("Resubmitting incomplete event publications older than {} every {}.", olderThan, interval);
				registrar.addFixedDelayTask(() -> run(() -> incomplete.resubmitIncompletePublicationsOlderThan(olderThan)),
						interval);
			}
			case "failed" -> {
				var options = ResubmissionOptions.defaults().withMinAge(olderThan);
				LOG.info("Resubmitting failed event publications older than {} every {}.", olderThan, interval);
				registrar.addFixedDelayTask(() -> run(() -> failed.resubmit(options)), interval);
			}
			default -> LOG.info("No resubmission of event publications while running (MODULITH_RESUBMIT=off).");
		}
	}

	private static void run(Runnable resubmission) {
		try {
			resubmission.run();
		} catch (RuntimeException e) {
			LOG.warn("Resubmission failed: {}", e.getMessage());
		}
	}
}
