/**
 * Sends email through the SMTP server of Synapse's `email` section (nodemailer's SMTP transport). nodemailer is
 * loaded with the first email, so a server that sends none never holds it in memory.
 */
import type { Transporter } from "nodemailer";
import type { EmailConfig } from "../../config/config.js";

export interface EmailMessage {
  to: string;
  subject: string;
  text: string;
  html: string;
}

export class Mailer {
  private transport: Promise<Transporter> | undefined;

  constructor(private readonly config: EmailConfig) {}

  private open(): Promise<Transporter> {
    const config = this.config;
    this.transport ??= import("nodemailer").then(({ createTransport }) =>
      createTransport({
        host: config.smtpHost,
        port: config.smtpPort,
        secure: config.forceTls,
        // Synapse's enable_tls: false never upgrades with STARTTLS; require_transport_security refuses to send without it.
        ignoreTLS: !config.enableTls,
        requireTLS: config.requireTransportSecurity,
        ...(config.smtpUser !== undefined ? { auth: { user: config.smtpUser, pass: config.smtpPass ?? "" } } : {}),
        ...(config.tlsName !== undefined ? { tls: { servername: config.tlsName } } : {}),
        connectionTimeout: 30_000,
        greetingTimeout: 30_000,
        socketTimeout: 60_000,
      }),
    );
    return this.transport;
  }

  async send(msg: EmailMessage): Promise<void> {
    const transport = await this.open();
    await transport.sendMail({ from: this.config.notifFrom, to: msg.to, subject: msg.subject, text: msg.text, html: msg.html });
  }

  close(): void {
    void this.transport?.then((t) => t.close()).catch(() => undefined);
  }
}
