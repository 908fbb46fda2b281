/* e3backup dashboard: small progressive enhancements. Every page works without this script. */
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Selects that apply at once (tenant switcher, run filter); the button stays for keyboards.
  document.querySelectorAll("form[data-autosubmit] select").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });

  // Copy buttons (the enrollment command).
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
        button.textContent = "Copied";
      } catch (e) {
        button.textContent = "Press Ctrl+C";
      }
    });
  });

  // --- job wizard ---------------------------------------------------------------------------
  const wizard = document.getElementById("job-wizard");
  if (wizard) {
    const checked = (name) => (wizard.querySelector(`input[name="${name}"]:checked`) || {}).value;
    const showSections = () => {
      const engine = checked("engine") || "files";
      wizard.querySelectorAll("[data-engines]").forEach((el) => {
        el.hidden = !el.dataset.engines.split(" ").includes(engine);
      });
      const dest = checked("destination.type") || "s3";
      wizard.querySelectorAll("[data-destination]").forEach((el) => {
        el.hidden = el.dataset.destination !== dest;
      });
    };
    // Only the engines the chosen agent reported (an agent that never reported gets them all).
    const offerEngines = () => {
      const option = document.getElementById("agent_id").selectedOptions[0];
      const engines = option && option.dataset.engines !== undefined ? option.dataset.engines.split(" ") : null;
      const radios = [...wizard.querySelectorAll('input[name="engine"]')];
      radios.forEach((radio) => {
        const off = engines !== null && !engines.includes(radio.value);
        radio.disabled = off;
        const note = document.getElementById(`engine-${radio.value}-unavailable`);
        note.hidden = !off;
        note.textContent = `Not available on this agent (${option.dataset.platform}).`;
      });
      const current = radios.find((r) => r.checked);
      if (current && current.disabled) {
        const first = radios.find((r) => !r.disabled);
        if (first) first.checked = true;
      }
    };
    wizard.addEventListener("change", (event) => {
      if (event.target.name === "agent_id") offerEngines();
      if (["engine", "destination.type", "agent_id"].includes(event.target.name)) showSections();
    });
    offerEngines();
    showSections();

    const agentSelect = document.getElementById("agent_id");
    const volumeSelect = document.getElementById("disk_source_volume");
    const status = document.getElementById("disks-status");
    const refresh = document.getElementById("refresh-disks");

    const fillVolumes = async (agentId) => {
      const response = await fetch(`/agents/${agentId}/disk-choices`, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`disk list: HTTP ${response.status}`);
      const data = await response.json();
      const keep = volumeSelect.value;
      volumeSelect.replaceChildren();
      const first = new Option(data.choices.length ? "Choose a volume or disk…" : "No disks reported yet: press Refresh", "");
      volumeSelect.add(first);
      data.choices.forEach((c) => volumeSelect.add(new Option(c.label, c.value, false, c.value === keep)));
      return data;
    };

    agentSelect.addEventListener("change", async () => {
      try {
        const data = await fillVolumes(agentSelect.value);
        status.textContent = data.reported_at ? `Disks as the agent reported them at ${data.reported_at}.` : "The agent has not reported its disks yet.";
      } catch (e) {
        status.textContent = `Could not load the disks: ${e.message}`;
      }
    });

    // Ask the agent for its disks now. The server waits up to 30 s, then answers 504 with a
    // command_id; we keep waiting on that same command: 3 attempts in all, as the seeds say.
    const ATTEMPTS = 3;
    refresh.addEventListener("click", async () => {
      const agentId = agentSelect.value;
      refresh.disabled = true;
      let commandId = null;
      try {
        for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
          if (!attempt) status.textContent = "Asking the agent for its disks…";
          const url = `/api/agents/${agentId}/disks/refresh` + (commandId ? `?command_id=${commandId}` : "");
          const response = await fetch(url, { method: "POST", headers: { "X-CSRF-Token": csrf(), Accept: "application/json" } });
          if (response.ok) {
            const data = await fillVolumes(agentId);
            status.textContent = `Disks refreshed: ${data.choices.length} choice${data.choices.length === 1 ? "" : "s"}.`;
            return;
          }
          const body = await response.json().catch(() => ({}));
          if (response.status === 504 && body.command_id) {
            if (attempt === ATTEMPTS - 1) break;
            commandId = body.command_id;
            status.textContent = `The agent has not answered yet; waiting again (retry ${attempt + 1} of ${ATTEMPTS} attempts in all)…`;
            await sleep(1500);
            continue;
          }
          status.textContent = `Could not refresh: ${body.detail || "HTTP " + response.status}`;
          return;
        }
        status.textContent = `The agent did not answer after ${ATTEMPTS} attempts. Is it online? Try again later.`;
      } catch (e) {
        status.textContent = `Could not refresh: ${e.message}`;
      } finally {
        refresh.disabled = false;
      }
    });
  }

  // --- live run progress --------------------------------------------------------------------
  const runBox = document.getElementById("run");
  if (runBox && runBox.dataset.final !== "true") {
    const runId = runBox.dataset.runId;
    let lastEventId = Number(runBox.dataset.lastEventId || 0);
    const liveState = document.getElementById("live-state");
    const eventList = document.getElementById("events");

    const addEvent = (e) => {
      if (e.id <= lastEventId) return;
      lastEventId = e.id;
      const li = document.createElement("li");
      li.className = `event level-${e.level}`;
      li.dataset.eventId = e.id;
      const part = (tag, cls, text) => {
        const el = document.createElement(tag);
        el.className = cls;
        el.textContent = text;
        li.appendChild(el);
        return el;
      };
      part("span", "ev-time", e.time).title = e.when;
      part("span", "ev-level", e.level);
      part("code", "ev-code", e.code);
      if (e.message) part("span", "ev-message", e.message);
      if (e.meaning) part("p", "ev-meaning", e.meaning);
      eventList.appendChild(li);
      document.getElementById("no-events").hidden = true;
    };

    const apply = (payload) => {
      const run = payload.run;
      runBox.querySelectorAll("[data-field]").forEach((el) => {
        const value = run[el.dataset.field];
        if (value === undefined) return;
        el.textContent = value;
        if ("hideDash" in el.dataset) el.hidden = value === "—";
        if ("hideEmpty" in el.dataset) el.hidden = !value;
      });
      runBox.querySelectorAll(".status[data-field]").forEach((el) => {
        el.className = `status status-${run.status}`;
      });
      const bar = document.getElementById("progress");
      if (run.progress_pct !== null) bar.value = run.progress_pct;
      (payload.events || []).forEach(addEvent);
      runBox.dataset.final = run.final ? "true" : "false";
    };

    const finished = () => {
      liveState.textContent = "Finished.";
      setTimeout(() => window.location.reload(), 1200); // the final page: charts, restore button
    };

    const poll = async () => {
      liveState.textContent = "Live (polling every second).";
      for (;;) {
        try {
          const response = await fetch(`/runs/${runId}/live?after_id=${lastEventId}`, { headers: { Accept: "application/json" } });
          if (response.status === 401 || response.status === 404) {
            liveState.textContent = "Live updates stopped: signed out or no access.";
            return;
          }
          if (response.ok) {
            const payload = await response.json();
            apply(payload);
            if (payload.run.final && !payload.events.length) return finished();
          }
        } catch (e) {
          liveState.textContent = "Connection lost; retrying…";
        }
        await sleep(1000);
      }
    };

    if (window.EventSource) {
      let opened = false;
      const source = new EventSource(`/runs/${runId}/events/stream?after_id=${lastEventId}`);
      source.addEventListener("open", () => {
        opened = true;
        liveState.textContent = "Live: the page updates by itself.";
      });
      source.addEventListener("update", (message) => apply(JSON.parse(message.data)));
      source.addEventListener("end", (message) => {
        source.close();
        const data = JSON.parse(message.data);
        if (data.reason === "finished") finished();
        else liveState.textContent = "Live updates stopped: signed out or no access.";
      });
      source.addEventListener("error", () => {
        if (!opened) {
          source.close(); // never connected: fall back to polling
          poll();
        }
      });
    } else {
      poll();
    }
  }
})();
