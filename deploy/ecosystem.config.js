// PM2 settings for @APP@, written by deploy/setup-auto-recovery.sh. Review, add your app's
// `env` (PORT, NODE_ENV, ...) and `args`, then switch to it once:
//   pm2 delete @APP@ && pm2 start @PREFIX@/ecosystem.config.js && pm2 save
// PM2 restarts a process that exits or outgrows max_memory_restart; a hung one (online, but
// not answering) is recovery's job.
module.exports = {
  apps: [
    {
      name: '@APP@',
      script: '@SCRIPT@',
      cwd: '@CWD@',
      autorestart: true,
      min_uptime: '30s',                // a start that dies sooner counts as unstable
      max_restarts: 10,                 // unstable restarts before PM2 gives up (status "errored")
      exp_backoff_restart_delay: 100,   // 100 ms, doubling up to 15 s, between crash restarts
      max_memory_restart: '1G',         // adjust to the app: restart a leak before the OOM killer acts
      kill_timeout: 5000,               // ms between SIGINT and SIGKILL on stop/restart
      listen_timeout: 10000,            // ms to wait for the app to listen on reload
      error_file: '@PREFIX@/logs/@APP@-error.log',
      out_file: '@PREFIX@/logs/@APP@-out.log',
      merge_logs: true,                 // one file per stream, not one per cluster instance
      time: true,
      log_date_format: 'YYYY-MM-DD HH:mm:ss.SSS Z', // real timestamps for `recovery ingest`
    },
  ],
};
