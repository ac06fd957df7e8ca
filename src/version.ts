/** Myelin's version, as reported by the admin API and federation /version. */
export const MYELIN_VERSION = "0.1.0";
