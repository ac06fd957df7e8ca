/** Sends email through the SMTP server of Synapse's `email` section (nodemailer's SMTP transport). */
import { createTransport, type Transporter } from "nodemailer";
import type { EmailConfig } from "../../config/config.js";

export interface EmailMessage {
  to: string;
  subject: string;
  text: string;
  html: string;
}

export class Mailer {
  private readonly transport: Transporter;

  constructor(private readonly config: EmailConfig) {
    this.transport = createTransport({
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
    });
  }

  async send(msg: EmailMessage): Promise<void> {
    await this.transport.sendMail({ from: this.config.notifFrom, to: msg.to, subject: msg.subject, text: msg.text, html: msg.html });
  }

  close(): void {
    this.transport.close();
  }
}
